"""One uploader of the nemesis runs: uploads unique files over SFTP with
paramiko, in a loop, and writes every client-visible outcome as a JSON line.

usage: nemesis_client.py PORT USER PASSWORD WORKER HISTORY STOP_FILE SEED
       nemesis_client.py login PORT USER PASSWORD

Each attempt uploads a new name, `wWORKER-SEQ.dat` (1 to 48 KiB of seeded
random bytes), and is never retried under the same name, so the checker can
tell every attempt apart. One line per attempt:

  {"worker": 0, "seq": 7, "name": "w0-00007.dat", "size": 1234,
   "sha256": "...", "start_ms": ..., "end_ms": ..., "outcome": "ok",
   "error": null}

`outcome` is what the client saw:
* "ok": the server answered the close with success;
* "failed": the server answered a request of the upload with an SFTP error
  status (it said the upload failed);
* "unknown": the connection broke or timed out before the answer, so the
  upload may or may not have happened.

Logins are recorded too (`"op": "login"`), with "ok" or "failed" and the
error, for the outage figures. A session is reused until something fails;
then the next attempt logs in again at once. Every wait is bounded
(STALL_SECS). Stops when STOP_FILE exists.

`login` tries one login and prints "accepted" or "refused: why" (the
disabled-account probes).
"""

import hashlib
import json
import os
import random
import socket
import sys
import time

import paramiko

STALL_SECS = 20


def now_ms():
    return int(time.time() * 1000)


def connect(port, user, password):
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    client.connect(
        "127.0.0.1",
        port=port,
        username=user,
        password=password,
        look_for_keys=False,
        allow_agent=False,
        timeout=STALL_SECS,
        banner_timeout=STALL_SECS,
        auth_timeout=STALL_SECS,
        channel_timeout=STALL_SECS,
    )
    sftp = client.open_sftp()
    sftp.get_channel().settimeout(STALL_SECS)
    return client, sftp


def close_reporting(sftp, f):
    """Closes `f` and raises what the close answered: paramiko's own
    SFTPFile.close swallows every error of the CLOSE request (an upload
    the server failed to commit, a connection lost while committing), so a
    client using it is told success either way."""
    sftp._finish_responses(f)  # the acks of the pipelined writes
    f._closed = True  # paramiko must not send a second CLOSE later
    sftp._request(paramiko.sftp.CMD_CLOSE, f.handle)


def probe(port, user, password):
    try:
        client, _ = connect(int(port), user, password)
        client.close()
        print("accepted")
    except Exception as e:  # noqa: BLE001 - any refusal is the answer
        print(f"refused: {type(e).__name__}: {e}")


def main():
    if sys.argv[1] == "login":
        probe(*sys.argv[2:5])
        return
    port, user, password, worker, history, stop_file, seed = sys.argv[1:8]
    port, worker = int(port), int(worker)
    rng = random.Random(f"{seed}-{worker}")
    out = open(history, "a", buffering=1)
    client = sftp = None
    seq = 0
    while not os.path.exists(stop_file):
        if sftp is None:
            start = now_ms()
            try:
                client, sftp = connect(port, user, password)
                entry = {"outcome": "ok", "error": None}
            except Exception as e:  # noqa: BLE001 - every failure is recorded
                entry = {"outcome": "failed", "error": f"{type(e).__name__}: {e}"}
                if client is not None:
                    client.close()
                client = sftp = None
            entry.update(op="login", worker=worker, start_ms=start, end_ms=now_ms())
            out.write(json.dumps(entry) + "\n")
            if sftp is None:
                time.sleep(0.2)
                continue
        seq += 1
        size = rng.randint(1024, 48 * 1024)
        data = rng.randbytes(size)
        name = f"w{worker}-{seq:05d}.dat"
        entry = {
            "op": "upload",
            "worker": worker,
            "seq": seq,
            "name": name,
            "size": size,
            "sha256": hashlib.sha256(data).hexdigest(),
            "start_ms": now_ms(),
        }
        try:
            f = sftp.open(name, "wb")
            f.set_pipelined(True)
            f.write(data)
            f.flush()
            close_reporting(sftp, f)
            entry.update(outcome="ok", error=None)
        except (EOFError, paramiko.SSHException, socket.timeout, ConnectionError) as e:
            # The connection broke or an answer did not come in time.
            entry.update(outcome="unknown", error=f"{type(e).__name__}: {e}")
        except IOError as e:
            # paramiko raises IOError for an SFTP error status the server sent.
            entry.update(outcome="failed", error=f"{type(e).__name__}: {e}")
        except Exception as e:  # noqa: BLE001
            entry.update(outcome="unknown", error=f"{type(e).__name__}: {e}")
        entry["end_ms"] = now_ms()
        out.write(json.dumps(entry) + "\n")
        if entry["outcome"] != "ok":
            try:
                client.close()
            except Exception:  # noqa: BLE001
                pass
            client = sftp = None
    if client is not None:
        client.close()


if __name__ == "__main__":
    main()
