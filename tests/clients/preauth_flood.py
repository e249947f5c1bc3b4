"""Opens N TCP connections to an SSH port from SOURCE_IP that never log in
(half send nothing, half send a client banner and then stall), and reports
how many the server admitted (it sent its banner), how many it refused at
once, and how many were still open after WAIT seconds.

usage: preauth_flood.py SOURCE_IP PORT N WAIT
"""
import json
import socket
import sys
import time

source, port, n, wait = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
socks = []
for i in range(n):
    s = socket.socket()
    s.bind((source, 0))
    s.settimeout(5)
    s.connect(("127.0.0.1", port))
    if i % 2:
        s.sendall(b"SSH-2.0-stalling_client\r\n")
    socks.append(s)

admitted = refused = 0
for s in socks:
    try:
        data = s.recv(256)
    except (socket.timeout, OSError):
        data = None
    if data and data.startswith(b"SSH-2.0-"):
        admitted += 1
    else:
        refused += 1

time.sleep(wait)
still_open = 0
for s in socks:
    s.settimeout(0.5)
    try:
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
    except socket.timeout:
        still_open += 1
    except OSError:
        pass
print(json.dumps({"admitted": admitted, "refused": refused, "open_after_wait": still_open}))
