"""Fills a Ferry store with transfer-log rows until the database file is
at least TARGET_MB megabytes: a store the size of a real deployment's, for
catch-up tests. The rows are plausible (UUID-like ids, hashes, paths,
times) and all distinct.

usage: seed_store.py FERRY_DB TARGET_MB
prints {"rows": N, "bytes": SIZE} as JSON."""

import hashlib
import json
import os
import sqlite3
import sys
import uuid


def main():
    path, target = sys.argv[1], int(sys.argv[2]) * 1_000_000
    db = sqlite3.connect(path)
    db.execute("PRAGMA synchronous=OFF")
    rows = 0
    base = 1_700_000_000_000
    while os.path.getsize(path) < target:
        batch = []
        for _ in range(50_000):
            n = rows + len(batch)
            digest = hashlib.sha256(n.to_bytes(8, "big")).hexdigest()
            started = base + n * 37
            batch.append((
                str(uuid.UUID(int=(n << 64) | 0x7000_8000_0000_0000)),
                f"partner{n % 97:02d}",
                "sftp" if n % 3 else "https",
                "upload" if n % 2 else "download",
                f"/inbox/{n % 1000:03d}/invoice-{n:09d}-{digest[:12]}.xml",
                (n * 7919) % 10_000_000,
                digest,
                started,
                started + 1200,
                "completed",
                "s1",
                f"192.0.2.{n % 250 + 1}:{40000 + n % 20000}",
                (n * 7919) % 10_000_000,
            ))
        db.executemany(
            "INSERT INTO transfers (id, account, protocol, direction, path, bytes,"
            " sha256, started_at, ended_at, status, node, client_addr, size)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            batch,
        )
        db.commit()
        rows += len(batch)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    print(json.dumps({"rows": rows, "bytes": os.path.getsize(path)}))


main()
