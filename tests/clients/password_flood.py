"""Tries one wrong password per SSH connection, N connections at once,
spread over the SOURCES addresses (comma-separated), and reports how
many were refused, how many hit another error, and how long it took.

usage: password_flood.py PORT USER N SOURCES
  USER may hold "{}", replaced by the attempt's number (one name each).
"""
import json
import socket
import sys
import threading
import time

import paramiko

port, user, n, sources = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4].split(",")
counts = {"refused": 0, "accepted": 0, "errors": 0}
lock = threading.Lock()


def attempt(i):
    outcome = "errors"
    try:
        s = socket.socket()
        s.bind((sources[i % len(sources)], 0))
        s.settimeout(60)
        s.connect(("127.0.0.1", port))
        t = paramiko.Transport(s)
        t.start_client(timeout=60)
        try:
            t.auth_password(user.replace("{}", str(i)), "wrong-password-%d" % i)
            outcome = "accepted"
        except paramiko.AuthenticationException:
            outcome = "refused"
        t.close()
    except Exception:
        pass
    with lock:
        counts[outcome] += 1


started = time.monotonic()
threads = [threading.Thread(target=attempt, args=(i,)) for i in range(n)]
for t in threads:
    t.start()
for t in threads:
    t.join()
counts["seconds"] = round(time.monotonic() - started, 1)
print(json.dumps(counts))
