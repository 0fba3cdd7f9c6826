"""Real upload clients against a real `mediahub serve`: tuspy in this process, tus-js-client and Uppy in Node.

The Node clients come from tests/clients/package-lock.json (`make test` runs `npm ci` there). Each script
takes a job (a JSON file) and prints one JSON report on stdout. Locally a missing Node or missing packages
skip these tests; with CI=true they fail them.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from PIL import Image
from sqlalchemy import select

from mediahub.db.models import MediaItem, Upload
from mediahub.db.session import Database
from tests.reliability.harness import ServerProcess, running, server_env, wait_until
from tests.support.s3_server import make_s3_storage
from tests.support.services import IN_CI

CLIENTS_DIR = Path(__file__).resolve().parent
TUS_PATH = "/v1/media/tus/"
TUS = {"Tus-Resumable": "1.0.0"}
GALLERY = "/v1/media/properties/{entity}/photos"  # the form upload route of a field taking images and videos
LEASE_SECONDS = 2  # UPLOAD_LEASE_SECONDS of these servers: what a killed request holds an upload for
NODE_TIMEOUT = 120


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def unique(prefix: str) -> str:
    """An entity id of its own per test, so listings hold only that test's items."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


# ---------------------------------------------------------------------------------------------
# Node and its packages.

class Node:
    def __init__(self, executable: str, workdir: Path) -> None:
        self.executable = executable
        self.workdir = workdir

    def job_file(self, job: dict[str, Any]) -> Path:
        path = self.workdir / f"job-{uuid.uuid4().hex[:12]}.json"
        path.write_text(json.dumps(job))
        return path

    def start(self, script: str, job: dict[str, Any]) -> subprocess.Popen[str]:
        """The script in the background (its report is read with `report`)."""
        return subprocess.Popen([self.executable, str(CLIENTS_DIR / script), str(self.job_file(job))],
                                cwd=CLIENTS_DIR, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    @staticmethod
    def report(process: subprocess.Popen[str], timeout: float = NODE_TIMEOUT) -> dict[str, Any]:
        try:
            out, err = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            out, err = process.communicate()
            raise AssertionError(f"node did not finish in {timeout} s: {out[-2000:]} {err[-2000:]}") from None
        lines = out.strip().splitlines()
        try:
            return json.loads(lines[-1])
        except (IndexError, ValueError):
            raise AssertionError(f"node exited {process.returncode} without a report: {out[-2000:]} {err[-3000:]}")

    def run(self, script: str, job: dict[str, Any], timeout: float = NODE_TIMEOUT) -> dict[str, Any]:
        return self.report(self.start(script, job), timeout)


@pytest.fixture(scope="session")
def node(tmp_path_factory: pytest.TempPathFactory) -> Node:
    executable = shutil.which("node")
    missing = None
    if executable is None:
        missing = "node is not installed"
    elif not (CLIENTS_DIR / "node_modules" / "tus-js-client").is_dir():
        missing = "tests/clients/node_modules is missing (make test runs `npm ci` there)"
    if missing:
        if IN_CI:
            pytest.fail(f"{missing} (CI=true: the real-client tests must run)")
        pytest.skip(missing)
    assert executable is not None
    return Node(executable, tmp_path_factory.mktemp("node-jobs"))


# ---------------------------------------------------------------------------------------------
# A live server and what the tests ask it.

@dataclass
class Live:
    server: ServerProcess
    database_url: str

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def endpoint(self) -> str:
        return self.server.url + TUS_PATH

    def head(self, upload_url: str, auth: dict[str, str]) -> requests.Response:
        return requests.head(upload_url, headers={**auth, **TUS}, timeout=30)

    def offset(self, upload_url: str, auth: dict[str, str]) -> int:
        response = self.head(upload_url, auth)
        assert response.status_code == 200, response.text
        return int(response.headers["upload-offset"])

    def outcome(self, upload_url: str, auth: dict[str, str]) -> requests.Response:
        """GET of the upload: the item, the ingest's problem, or 202 while it is not finished."""
        return requests.get(upload_url, headers={**auth, **TUS}, timeout=30)

    def finished(self, upload_url: str, auth: dict[str, str], timeout: float = 60) -> requests.Response:
        """The GET answer once it is no longer 202."""
        answers: list[requests.Response] = []
        wait_until(lambda: answers.append(self.outcome(upload_url, auth)) or answers[-1].status_code != 202, timeout)
        return answers[-1]

    def form_upload(self, path: Path, route: str, auth: dict[str, str]) -> requests.Response:
        with path.open("rb") as fh:
            return requests.post(self.url + route, headers=auth,
                                 files={"file": (path.name, fh, "application/octet-stream")}, timeout=120)

    def listing(self, entity_type: str, entity_id: str, auth: dict[str, str] | None = None) -> list[dict[str, Any]]:
        response = requests.get(f"{self.url}/v1/media/entity/{entity_type}/{entity_id}", headers=auth or {},
                                timeout=30)
        assert response.status_code == 200, response.text
        return response.json()["items"]

    def received_sha256(self, media_id: int | str) -> str:
        """The SHA-256 the database holds for the item: the digest of the bytes as the server received them."""
        database = Database(self.database_url)
        try:
            with database.session() as session:
                return session.execute(select(MediaItem.sha256).where(MediaItem.id == int(media_id))).scalar_one()
        finally:
            database.dispose()

    def ingesting(self, entity_id: str) -> bool:
        """Whether an upload to the entity has all its bytes and is being ingested (no outcome yet)."""
        database = Database(self.database_url)
        try:
            with database.session() as session:
                return session.execute(select(Upload.id).where(
                    Upload.entity_id == entity_id, Upload.state == "receiving", Upload.offset == Upload.length,
                    Upload.lease_token.is_not(None))).first() is not None
        finally:
            database.dispose()

    def original(self, item: dict[str, Any]) -> bytes:
        response = requests.get(item["url"], timeout=30)
        assert response.status_code == 200, response.text
        return response.content

    def restart(self, port: int) -> None:
        """Start it again on the same port (its clients keep their upload URLs), database and temp dir."""
        self.server.start(port=port)


@pytest.fixture(scope="session")
def big_png(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 14.5 MB PNG (2200 x 2200 of noise): over S3's 5 MiB part minimum, under the image caps."""
    side = 2200
    path = tmp_path_factory.mktemp("big") / "noise.png"
    Image.frombytes("RGB", (side, side), random.Random(16).randbytes(side * side * 3)).save(path, compress_level=1)
    return path


def live_server(workdir: Path, **overrides: Any) -> Iterator[Live]:
    """A `mediahub serve` on SQLite: local disk, or the S3 endpoint given as `s3_endpoint`."""
    database_url = f"sqlite:///{workdir / 'clients.db'}"
    s3_endpoint = overrides.pop("s3_endpoint", None)
    settings = {"upload_lease_seconds": LEASE_SECONDS, "temp_dir": workdir / "spool", **overrides}
    if s3_endpoint:
        bucket = make_s3_storage(s3_endpoint)
        bucket.check()  # creates it, as the deployment's readiness probe (/readyz) would
        env = server_env(database_url, s3_endpoint=s3_endpoint, bucket=bucket.bucket, **settings)
    else:
        env = server_env(database_url, media_root=workdir / "media", **settings)
    with running(env, workdir / "server") as server:
        yield Live(server, database_url)
