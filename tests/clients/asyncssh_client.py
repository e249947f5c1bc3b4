"""Drives Ferry with asyncssh's SFTP client, for the client-matrix test.

usage: asyncssh_client.py PORT USER KEY KNOWN_HOSTS LOCAL REMOTE BACK

Uploads LOCAL as REMOTE, downloads it again as BACK (asyncssh's defaults:
parallel requests), verifying the server's host key. Prints "DONE".
"""

import asyncio
import sys

import asyncssh


async def main():
    port, user, key, known_hosts, local, remote, back = sys.argv[1:]
    async with asyncssh.connect(
        "127.0.0.1",
        port=int(port),
        username=user,
        client_keys=[key],
        known_hosts=known_hosts,
        agent_path=None,
    ) as conn:
        async with conn.start_sftp_client() as sftp:
            await sftp.put(local, remote)
            await sftp.get(remote, back)
    print("DONE", flush=True)


asyncio.run(asyncio.wait_for(main(), timeout=120))
