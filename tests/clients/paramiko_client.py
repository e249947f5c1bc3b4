"""Drives Ferry with paramiko's SFTP client, for the client-matrix test.

usage: paramiko_client.py PORT USER KEY KNOWN_HOSTS REMOTE_BIG LOCAL_DIR LOCAL_PUT REMOTE_PUT

Each operation gets a connection of its own, so one that fails does not stop
the others: SFTPClient.get, SFTPClient.getfo and SFTPFile.prefetch of
REMOTE_BIG (all with paramiko's defaults), and SFTPClient.put of LOCAL_PUT.
A read that waits STALL_SECS without data fails instead of hanging. Prints
"OP ok SHA256" or "OP FAILED: why" per operation; exits 1 if any failed.
"""

import hashlib
import sys
import time

import paramiko

STALL_SECS = 15


def connect(port, user, key, known_hosts):
    client = paramiko.SSHClient()
    client.load_host_keys(known_hosts)
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect(
        "127.0.0.1",
        port=port,
        username=user,
        key_filename=key,
        look_for_keys=False,
        allow_agent=False,
        timeout=STALL_SECS,
    )
    sftp = client.open_sftp()
    sftp.get_channel().settimeout(STALL_SECS)
    return client, sftp


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def main():
    port, user, key, known_hosts, big, local_dir, local_put, remote_put = sys.argv[1:]
    port = int(port)

    def op_get(sftp):
        path = f"{local_dir}/get.bin"
        sftp.get(big, path)
        return sha256_of(path)

    def op_getfo(sftp):
        path = f"{local_dir}/getfo.bin"
        with open(path, "wb") as f:
            sftp.getfo(big, f)
        return sha256_of(path)

    def op_prefetch(sftp):
        digest = hashlib.sha256()
        with sftp.open(big, "rb") as f:
            f.prefetch()
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        return digest.hexdigest()

    def op_put(sftp):
        sftp.put(local_put, remote_put)
        return sha256_of(local_put)

    failed = False
    for name, op in [("get", op_get), ("getfo", op_getfo), ("prefetch", op_prefetch), ("put", op_put)]:
        started = time.monotonic()
        client = None
        try:
            client, sftp = connect(port, user, key, known_hosts)
            sha = op(sftp)
            print(f"{name} ok {sha} ({time.monotonic() - started:.1f} s)", flush=True)
        except Exception as e:  # report every failure and go on
            failed = True
            print(f"{name} FAILED: {type(e).__name__}: {e} after {time.monotonic() - started:.1f} s", flush=True)
        finally:
            if client is not None:
                client.close()
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
