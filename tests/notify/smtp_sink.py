"""An SMTP server for the notification tests (aiosmtpd): keeps each message
it accepts as NNNN.json in --out (envelope recipients, the decoded subject,
Message-ID and From, and the decoded text body, read with Python's email
parser). With --cert/--key it offers STARTTLS and
requires it; with --auth USER:PASSWORD it requires AUTH (after STARTTLS).
Prints "ready" once it listens."""

import argparse
import email
import email.policy
import json
import os
import signal
import ssl
import warnings

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult


class Sink:
    def __init__(self, out):
        self.out = out
        self.count = 0

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        raw = envelope.original_content or envelope.content
        message = email.message_from_bytes(raw, policy=email.policy.default)
        kept = {
            "to": envelope.rcpt_tos,
            "from": str(message["from"]),
            "subject": str(message["subject"]),
            "message_id": str(message["message-id"]),
            "body": message.get_body(preferencelist=("plain",)).get_content(),
        }
        path = os.path.join(self.out, f"{self.count:04d}.json")
        with open(path + ".tmp", "w") as f:
            json.dump(kept, f)
        os.rename(path + ".tmp", path)
        return "250 OK kept"


def main():
    warnings.simplefilter("ignore")
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--auth")
    a = p.parse_args()
    options = {}
    if a.cert:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(a.cert, a.key)
        options.update(tls_context=ctx, require_starttls=True)
    if a.auth:
        user, password = a.auth.split(":", 1)

        def check(server, session, envelope, mechanism, auth_data):
            ok = auth_data.login.decode() == user and auth_data.password.decode() == password
            return AuthResult(success=ok)

        options.update(authenticator=check, auth_required=True, auth_require_tls=bool(a.cert))
    controller = Controller(Sink(a.out), hostname="127.0.0.1", port=a.port, **options)
    controller.start()
    print("ready", flush=True)
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    controller.stop()


if __name__ == "__main__":
    main()
