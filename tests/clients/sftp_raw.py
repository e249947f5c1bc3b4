"""Raw SFTP requests over a paramiko channel, for the tests that need
exact control of what is in flight: pipelined requests on one path, and a
client that floods requests without reading a single reply.

usage: sftp_raw.py MODE PORT USER KEYFILE [ARGS]
  order N         N times: OPEN(CREAT)+LSTAT sent in one write, SETSTAT
                  by path while the file is open, CLOSE, then STAT; prints
                  a JSON summary of every answer that differs from OpenSSH's
  flood N PATH    opens PATH, sends N READ requests without reading any
                  reply, then waits; prints JSON with how many were sent
                  and whether (and when) the server closed the connection
  read PATH N     opens PATH, reads N bytes (-1: until EOF) in 32 KiB
                  requests, and drops the connection without a CLOSE
"""
import json
import socket
import struct
import sys
import threading
import time

import paramiko

FXP_INIT, FXP_VERSION, FXP_OPEN, FXP_CLOSE, FXP_READ = 1, 2, 3, 4, 5
FXP_LSTAT, FXP_SETSTAT, FXP_STAT = 7, 9, 17
FXP_STATUS, FXP_HANDLE, FXP_DATA, FXP_ATTRS = 101, 102, 103, 105
READ, WRITE, CREAT, TRUNC = 0x01, 0x02, 0x08, 0x10
ATTR_ACMODTIME = 0x08


def string(b):
    if isinstance(b, str):
        b = b.encode()
    return struct.pack(">I", len(b)) + b


def packet(kind, body):
    return struct.pack(">IB", len(body) + 1, kind) + body


class Sftp:
    def __init__(self, port, user, keyfile):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.t = paramiko.Transport(self.sock)
        key = paramiko.Ed25519Key.from_private_key_file(keyfile)
        self.t.connect(username=user, pkey=key)
        self.ch = self.t.open_session(timeout=30)
        self.ch.settimeout(60)
        self.ch.invoke_subsystem("sftp")
        self.ch.sendall(packet(FXP_INIT, struct.pack(">I", 3)))
        kind, _ = self.recv()
        assert kind == FXP_VERSION, kind
        self.next_id = 1

    def recv_exact(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.ch.recv(n - len(buf))
            if not chunk:
                raise EOFError("channel closed")
            buf += chunk
        return buf

    def recv(self):
        (n,) = struct.unpack(">I", self.recv_exact(4))
        body = self.recv_exact(n)
        return body[0], body[1:]

    def rid(self):
        self.next_id += 1
        return self.next_id

    def reply(self):
        """The next reply as (id, kind, rest)."""
        kind, body = self.recv()
        (rid,) = struct.unpack(">I", body[:4])
        return rid, kind, body[4:]


def status_code(rest):
    return struct.unpack(">I", rest[:4])[0]


def order(s, n):
    bad = []
    for i in range(n):
        path = f"/order-{i}.txt"
        o, l = s.rid(), s.rid()
        s.ch.sendall(
            packet(FXP_OPEN, struct.pack(">I", o) + string(path) + struct.pack(">II", WRITE | CREAT | TRUNC, 0))
            + packet(FXP_LSTAT, struct.pack(">I", l) + string(path))
        )
        got = dict((rid, (kind, rest)) for rid, kind, rest in (s.reply(), s.reply()))
        if got[o][0] != FXP_HANDLE:
            bad.append({"i": i, "open": got[o][0]})
            continue
        handle = got[o][1][4 : 4 + struct.unpack(">I", got[o][1][:4])[0]]
        if got[l][0] != FXP_ATTRS:
            bad.append({"i": i, "lstat": got[l][0], "status": status_code(got[l][1])})
        st = s.rid()
        s.ch.sendall(
            packet(FXP_SETSTAT, struct.pack(">I", st) + string(path) + struct.pack(">III", ATTR_ACMODTIME, 1000000000, 1000000000 + i))
        )
        rid, kind, rest = s.reply()
        if kind != FXP_STATUS or status_code(rest) != 0:
            bad.append({"i": i, "setstat": kind, "status": status_code(rest)})
        c, after = s.rid(), s.rid()
        s.ch.sendall(
            packet(FXP_CLOSE, struct.pack(">I", c) + string(handle))
            + packet(FXP_STAT, struct.pack(">I", after) + string(path))
        )
        got = dict((rid, (kind, rest)) for rid, kind, rest in (s.reply(), s.reply()))
        if got[c][0] != FXP_STATUS or status_code(got[c][1]) != 0:
            bad.append({"i": i, "close": got[c][0]})
        if got[after][0] != FXP_ATTRS:
            bad.append({"i": i, "stat": got[after][0]})
        else:
            rest = got[after][1]
            (flags,) = struct.unpack(">I", rest[:4])
            off = 4 + (8 if flags & 0x1 else 0) + (8 if flags & 0x2 else 0) + (4 if flags & 0x4 else 0)
            _, mtime = struct.unpack(">II", rest[off : off + 8])
            if mtime != 1000000000 + i:
                bad.append({"i": i, "mtime": mtime})
    print(json.dumps({"rounds": n, "bad": bad}))


def flood(s, n, path):
    o = s.rid()
    s.ch.sendall(packet(FXP_OPEN, struct.pack(">I", o) + string(path) + struct.pack(">II", READ, 0)))
    rid, kind, rest = s.reply()
    assert kind == FXP_HANDLE, kind
    handle = rest[4 : 4 + struct.unpack(">I", rest[:4])[0]]
    sent = [0]
    start = time.monotonic()

    def send_all():
        one = lambda i: packet(FXP_READ, struct.pack(">I", 1000 + i) + string(handle) + struct.pack(">QI", 0, 32768))
        try:
            for i in range(0, n, 100):
                s.ch.sendall(b"".join(one(j) for j in range(i, min(n, i + 100))))
                sent[0] = min(n, i + 100)
        except Exception:
            pass

    sender = threading.Thread(target=send_all, daemon=True)
    sender.start()
    # Read nothing; wait until the server gives up on us.
    deadline = start + float(sys.argv[7]) if len(sys.argv) > 7 else start + 120
    closed_at = None
    while time.monotonic() < deadline:
        if not s.t.is_active() or s.ch.closed:
            closed_at = time.monotonic() - start
            break
        time.sleep(0.2)
    print(json.dumps({"requests": n, "sent": sent[0], "closed_after_secs": closed_at}))


def read(s, path, n):
    o = s.rid()
    s.ch.sendall(packet(FXP_OPEN, struct.pack(">I", o) + string(path) + struct.pack(">II", READ, 0)))
    rid, kind, rest = s.reply()
    assert kind == FXP_HANDLE, kind
    handle = rest[4 : 4 + struct.unpack(">I", rest[:4])[0]]
    got = 0
    while n < 0 or got < n:
        r = s.rid()
        want = 32768 if n < 0 else min(32768, n - got)
        s.ch.sendall(packet(FXP_READ, struct.pack(">I", r) + string(handle) + struct.pack(">QI", got, want)))
        rid, kind, rest = s.reply()
        if kind == FXP_STATUS:
            break
        got += struct.unpack(">I", rest[:4])[0]
    s.t.close()
    print(json.dumps({"read": got}))


def main():
    mode, port, user, keyfile = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    s = Sftp(port, user, keyfile)
    if mode == "order":
        order(s, int(sys.argv[5]))
    elif mode == "read":
        read(s, sys.argv[5], int(sys.argv[6]))
    elif mode == "flood":
        flood(s, int(sys.argv[5]), sys.argv[6])
    else:
        raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
