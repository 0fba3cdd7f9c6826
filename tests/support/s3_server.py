"""S3 fixtures: moto's real HTTP server in a subprocess, on loopback.

A real server (not moto's in-process mocks) means the S3 backend is exercised
through botocore's actual HTTP stack: signing, retries, timeouts, multipart.
Locally a server that will not start skips the S3 tests; with CI=true it fails them.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from mediahub.storage.local import LocalStorage
from mediahub.storage.s3 import S3Storage
from tests.support.processes import stop_process
from tests.support.services import require_service

HOST = "127.0.0.1"
START_TIMEOUT = 20.0
MB = 1024 * 1024
DUMMY_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _answers(endpoint: str) -> bool:
    """Any HTTP answer (even an error status) means the server is up."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        opener.open(endpoint, timeout=1).close()
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False
    return True


def _wait_until_up(process: subprocess.Popen[bytes], endpoint: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline and process.poll() is None:
        if _answers(endpoint):
            return
        time.sleep(0.1)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Endpoint URL of a moto S3 server that lives for the whole session."""
    port = free_port()
    endpoint = f"http://{HOST}:{port}"
    log_path = tmp_path_factory.mktemp("moto") / "server.log"
    with log_path.open("wb") as log:  # a file, not a pipe: a full pipe would block the server
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(port)],
            env={**os.environ, **DUMMY_CREDENTIALS, "AWS_DEFAULT_REGION": "us-east-1"},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_until_up(process, endpoint)
        if not _answers(endpoint):
            # Shown with the failure in CI; explains why the server never came up.
            sys.stderr.write(log_path.read_text(errors="replace")[-4000:])
        require_service("moto S3 server", HOST, port)
        yield endpoint
    finally:
        stop_process(process, timeout=10)


def make_s3_storage(
    endpoint: str, *, timeout: float = 5.0, create_bucket: bool = True, public_base_url: str | None = None,
    public_bucket: bool = False, cache_control: str | None = None,
) -> S3Storage:
    """An S3Storage on a fresh bucket name; the 5 MiB threshold (S3's minimum part) keeps multipart cheap.

    `public_bucket`: public URLs are the bucket's own, read anonymously over HTTP.
    """
    bucket = f"test-{uuid.uuid4().hex[:16]}"
    return S3Storage(
        bucket=bucket,
        endpoint_url=endpoint,
        region="us-east-1",
        access_key=DUMMY_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        secret_key=DUMMY_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        public_base_url=f"{endpoint}/{bucket}" if public_bucket else public_base_url,
        timeout=timeout,
        multipart_threshold=5 * MB,
        create_bucket=create_bucket,
        cache_control=cache_control,
    )


def anonymous_get(url: str) -> tuple[int, dict[str, str], bytes]:
    """A plain HTTP GET without credentials (as a browser or a CDN would make it): status, headers, body."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=10) as response:
            return response.status, {k.lower(): v for k, v in response.headers.items()}, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read()


@pytest.fixture
def s3_storage(s3_server: str) -> S3Storage:
    storage = make_s3_storage(s3_server)
    storage.check()  # creates the bucket
    return storage


@pytest.fixture
def local_storage(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "media")
