"""Two SFTP sessions of one account race to lead an open out of the home.

usage: rename_race.py MODE PORT USER KEYFILE SECONDS
  MODE read:  opens /z/link/secret.txt and reads it, again and again
  MODE write: creates /z/link/planted-N.txt, again and again
from three sessions, while another session renames /sub to /z and back in
a loop (/sub/link leads outside the home). Prints a JSON summary: opens
tried, opens that succeeded, renames done, and the contents read.
"""
import json
import sys
import threading
import time

import paramiko


def connect(port, user, keyfile):
    t = paramiko.Transport(("127.0.0.1", int(port)))
    t.connect(username=user, pkey=paramiko.Ed25519Key.from_private_key_file(keyfile))
    return t, paramiko.SFTPClient.from_transport(t)


OPENERS = 3


def main():
    mode, port, user, keyfile, seconds = sys.argv[1:6]
    deadline = time.monotonic() + float(seconds)
    t0, swapper = connect(port, user, keyfile)
    openers = [connect(port, user, keyfile) for _ in range(OPENERS)]
    renames = [0]

    def swap():
        while time.monotonic() < deadline:
            for a, b in (("/sub", "/z"), ("/z", "/sub")):
                try:
                    swapper.rename(a, b)
                    renames[0] += 1
                except IOError:
                    pass

    lock = threading.Lock()
    totals = {"tried": 0, "opened": 0}
    seen = set()

    def open_loop(k, sftp):
        n = 0
        while time.monotonic() < deadline:
            n += 1
            ok = False
            try:
                if mode == "read":
                    with sftp.open("/z/link/secret.txt", "r") as f:
                        data = f.read().decode(errors="replace")
                    with lock:
                        seen.add(data)
                else:
                    with sftp.open("/z/link/planted-%d-%d.txt" % (k, n), "w") as f:
                        f.write(b"planted")
                ok = True
            except IOError:
                pass
            with lock:
                totals["tried"] += 1
                totals["opened"] += ok

    threads = [threading.Thread(target=swap)]
    threads += [
        threading.Thread(target=open_loop, args=(k, s)) for k, (_, s) in enumerate(openers)
    ]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    for t, _ in [(t0, swapper)] + openers:
        t.close()
    print(json.dumps(dict(totals, renames=renames[0], seen=sorted(seen))))


main()
