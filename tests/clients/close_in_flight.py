"""Sends an upload's CLOSE while the test holds the server, and reports what
the client was told once the server is gone: "unknown: ..." when the
connection ended (the edge cannot know whether the close committed), or
"failed: ..." / "ok" when it answered with a status.

usage: close_in_flight.py PORT USER PASSWORD
Prints READY after the data is written and acknowledged, waits for a line
on stdin, sends CLOSE, prints SENT, then waits (at most 30 s) for the answer.
"""

import sys

import paramiko
from paramiko.sftp import CMD_CLOSE

port, user, password = int(sys.argv[1]), sys.argv[2], sys.argv[3]
client = paramiko.SSHClient()
client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
client.connect("127.0.0.1", port=port, username=user, password=password,
               look_for_keys=False, allow_agent=False, timeout=30)
sftp = client.open_sftp()
sftp.get_channel().settimeout(30)
f = sftp.open("in-flight.dat", "wb")
f.write(b"x" * 100_000)
f.flush()
print("READY", flush=True)
sys.stdin.readline()
f._closed = True  # paramiko must not send its own CLOSE later
num = sftp._async_request(type(None), CMD_CLOSE, f.handle)
print("SENT", flush=True)
try:
    sftp._read_response(num)
    print("ok")
except (EOFError, paramiko.SSHException, TimeoutError, ConnectionError) as e:
    print(f"unknown: {type(e).__name__}: {e}")
except IOError as e:  # an SFTP status the edge answered
    print(f"failed: {e}")
