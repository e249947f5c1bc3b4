"""Uploads a file to Ferry with tuspy, the stock Python tus client.

Environment: FERRY_URL, FERRY_CA, FERRY_USER, FERRY_PASSWORD, FERRY_FILE,
FERRY_URL_STORE (tuspy's URL storage, so a later run resumes the upload),
optionally FERRY_STOP_AT: stop after that many bytes and exit at once, as a
process that dies would, and FERRY_CHECKSUM: the Upload-Checksum algorithm
(sha256 or md5; without it tuspy sends its default, sha1).
"""

import base64
import hashlib
import os
import sys

from tusclient import client
from tusclient.storage.filestorage import FileStorage
from tusclient.uploader import Uploader


class Sha256Uploader(Uploader):
    """An uploader whose Upload-Checksum is sha256 (tuspy's default is sha1)."""

    CHECKSUM_ALGORITHM_PAIR = ("sha256", hashlib.sha256)


class Md5Uploader(Uploader):
    """An uploader whose Upload-Checksum is md5."""

    CHECKSUM_ALGORITHM_PAIR = ("md5", hashlib.md5)


UPLOADERS = {None: Uploader, "sha256": Sha256Uploader, "md5": Md5Uploader}


def main():
    env = os.environ
    # requests (under tuspy) trusts this CA bundle for every request.
    os.environ["REQUESTS_CA_BUNDLE"] = env["FERRY_CA"]
    auth = base64.b64encode(f"{env['FERRY_USER']}:{env['FERRY_PASSWORD']}".encode()).decode()
    tus = client.TusClient(
        env["FERRY_URL"] + "/api/v1/uploads/", headers={"Authorization": "Basic " + auth}
    )
    path = env["FERRY_FILE"]
    uploader = UPLOADERS[env.get("FERRY_CHECKSUM")](
        file_path=path,
        client=tus,
        chunk_size=4 * 1024 * 1024,
        metadata={"filename": os.path.basename(path)},
        store_url=True,
        url_storage=FileStorage(env["FERRY_URL_STORE"]),
        upload_checksum=True,
        verify_tls_cert=True,
    )
    print("CHECKSUM", uploader.CHECKSUM_ALGORITHM_PAIR[0], flush=True)
    print("RESUMED_FROM", uploader.offset, flush=True)
    stop_at = env.get("FERRY_STOP_AT")
    if stop_at:
        uploader.upload(stop_at=int(stop_at))
        print("STOPPED", uploader.offset, flush=True)
        os._exit(3)
    uploader.upload()
    print("DONE", uploader.offset, uploader.url, flush=True)


if __name__ == "__main__":
    sys.exit(main())
