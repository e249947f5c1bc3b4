"""Holds HTTPS connections open without using them, and reports how many
the server had closed after WAIT seconds.

usage: https_hold.py SOURCE_IP PORT N MODE WAIT
  MODE tls:     finish TLS (ALPN http/1.1), then send nothing
  MODE h2:      finish TLS with ALPN h2, send the HTTP/2 preface and
                SETTINGS, then nothing
  MODE chunked: finish TLS, send a chunked PUT with one 10-byte chunk,
                then nothing more (an upload that never ends)
Prints JSON: connected, closed (by the server within WAIT), and the first
status line any of them was answered with.
"""
import json
import socket
import ssl
import sys
import time

source, port, n, mode, wait = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], float(sys.argv[5])
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
ctx.set_alpn_protocols(["h2"] if mode == "h2" else ["http/1.1"])

conns = []
for i in range(n):
    raw = socket.socket()
    raw.bind((source, 0))
    raw.settimeout(10)
    try:
        raw.connect(("127.0.0.1", port))
        s = ctx.wrap_socket(raw, server_hostname="localhost")
    except OSError:
        continue
    if mode == "h2":
        s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
    elif mode == "chunked":
        s.sendall(
            b"PUT /api/v1/files/never-ends.bin HTTP/1.1\r\nHost: localhost\r\n"
            b"Authorization: Basic YWxpY2U6Y29ycmVjdCBob3JzZSBiYXR0ZXJ5IHN0YXBsZQ==\r\n"
            b"Transfer-Encoding: chunked\r\n\r\na\r\n0123456789\r\n"
        )
    conns.append(s)

deadline = time.monotonic() + wait
closed, answer = set(), None
while time.monotonic() < deadline and len(closed) < len(conns):
    for i, s in enumerate(conns):
        if i in closed:
            continue
        s.settimeout(0.05)
        try:
            data = s.recv(65536)
            if not data:
                closed.add(i)
            elif answer is None and data.startswith(b"HTTP/1.1 "):
                answer = data.split(b"\r\n", 1)[0].decode()
        except socket.timeout:
            pass
        except (OSError, ssl.SSLError):
            closed.add(i)
print(json.dumps({"connected": len(conns), "closed": len(closed), "answer": answer}))
