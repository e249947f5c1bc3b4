"""Opens N TCP connections to PORT from SOURCE_IP that never send a byte,
and reports how many the server closed within a second (refused at once)
and how many were still open after WAIT more seconds.

usage: silent_flood.py SOURCE_IP PORT N WAIT
"""
import json
import socket
import sys
import time


def closed(s, timeout):
    """True if the server closed (or reset) the connection within timeout."""
    s.settimeout(timeout)
    try:
        while True:
            chunk = s.recv(4096)
            if not chunk:
                return True
    except socket.timeout:
        return False
    except OSError:
        return True


source, port, n, wait = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
socks = []
for i in range(n):
    s = socket.socket()
    s.bind((source, 0))
    s.settimeout(5)
    try:
        s.connect(("127.0.0.1", port))
    except OSError:
        continue
    socks.append(s)
time.sleep(1)
refused = [s for s in socks if closed(s, 0.01)]
time.sleep(wait)
still_open = sum(1 for s in socks if s not in refused and not closed(s, 0.2))
print(json.dumps({"connected": len(socks), "refused_at_once": len(refused), "open_after_wait": still_open}))
