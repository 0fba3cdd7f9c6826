"""Faults under a real server: S3 (moto) and PostgreSQL behind loopback proxies that refuse,
hang or break one PUT. Each fault: 503 with a stable code, no row, nothing this upload wrote
left behind, and the server takes the next upload as soon as the backend is back.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from sqlalchemy import select

from mediahub.db.models import PendingDelete
from mediahub.db.session import Database
from mediahub.media import verify as verify_service
from mediahub.storage.s3 import S3Storage
from tests.reliability.harness import (
    FaultProxy,
    ServerProcess,
    admin,
    record_peak,
    running,
    server_env,
    snapshot,
    tally,
    wait_until,
)
from tests.support.corpus import CORPUS_DIR
from tests.support.databases import SERVERS, empty_database
from tests.support.s3_server import make_s3_storage

PHOTO = CORPUS_DIR / "images/good/jpeg_flower.jpg"  # original + thumbnail (small is the original): two PUTs
S3_TIMEOUT = 1.0


@dataclass
class Rig:
    server: ServerProcess
    s3: FaultProxy
    pg: FaultProxy
    database_url: str  # direct, not through the proxy
    bucket: S3Storage

    def upload(self, entity: str, timeout: float = 60) -> requests.Response:
        files = {"file": (PHOTO.name, PHOTO.read_bytes(), "image/jpeg")}
        return requests.post(f"{self.server.url}/v1/media/properties/{entity}/photos", headers=admin(),
                             files=files, timeout=timeout)

    def state(self):
        return snapshot(self.database_url, self.bucket)

    def heal(self) -> None:
        self.s3.set_mode("pass")
        self.pg.set_mode("pass")
        self.s3.fail_puts_of(None)
        self.s3.on_put = None


@pytest.fixture(scope="module")
def rig(s3_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    work = tmp_path_factory.mktemp("faults")
    bucket = make_s3_storage(s3_server)
    bucket.check()
    s3_port = int(s3_server.rsplit(":", 1)[1])
    with empty_database(SERVERS["postgresql"]) as database_url:
        s3, pg = FaultProxy(s3_port, http=True), FaultProxy(5432)
        proxied_db = database_url.replace(":5432/", f":{pg.port}/")
        env = server_env(proxied_db, s3_endpoint=s3.url, bucket=bucket.bucket, s3_timeout_seconds=S3_TIMEOUT,
                         temp_dir=work / "spool")
        try:
            with running(env, work / "server") as server:
                yield Rig(server, s3, pg, database_url, bucket)
                record_peak("faults", server.vmhwm_kib())
        finally:
            s3.close()
            pg.close()


def _entity_objects(rig: Rig, entity: str) -> set[str]:
    return {key for key in rig.state().objects if f"/{entity}/" in key}


def _entity_rows(rig: Rig, entity: str) -> int:
    state = rig.state()
    return sum(1 for keys in state.row_keys.values() if any(f"/{entity}/" in k for k in keys))


def _survives(rig: Rig, entity: str, response: requests.Response, status: int, code: str) -> None:
    """The fault's answer, then nothing left of the upload, then a good upload once healed."""
    tally(faults_injected=1)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == code
    assert _entity_rows(rig, entity) == 0, "a row was committed"
    # Removing what was written happens before the answer; allow the store a moment to list it.
    assert wait_until(lambda: not _entity_objects(rig, entity), 10), _entity_objects(rig, entity)
    rig.heal()
    again = rig.upload(f"{entity}-after")
    assert again.status_code == 201, again.text
    tally(faults_survived=1)


def test_s3_down_is_503_and_leaves_nothing(rig: Rig) -> None:
    rig.s3.set_mode("refuse")
    _survives(rig, "s3down", rig.upload("s3down"), 503, "storage_unavailable")


def test_s3_that_never_answers_is_503_within_the_timeout(rig: Rig) -> None:
    rig.s3.set_mode("blackhole")
    response = rig.upload("s3hung", timeout=60)  # S3_TIMEOUT_SECONDS=1, two attempts: seconds, not minutes
    _survives(rig, "s3hung", response, 503, "storage_unavailable")


@pytest.mark.parametrize("nth", [1, 2])
def test_one_failing_put_of_several_is_503_and_removes_the_others(rig: Rig, nth: int) -> None:
    rig.s3.fail_puts_of(nth)  # every attempt at the nth object of the upload is cut mid-request
    response = rig.upload(f"put{nth}")
    assert rig.s3.failed_requests >= 1
    _survives(rig, f"put{nth}", response, 503, "storage_unavailable")


def test_database_down_at_commit_is_503_and_removes_the_objects_just_written(rig: Rig) -> None:
    # The first PUT takes the database away: authorisation has passed, the commit will fail.
    rig.s3.on_put = lambda key: rig.pg.set_mode("refuse")
    response = rig.upload("dbdown")
    rig.s3.on_put = None
    _survives(rig, "dbdown", response, 503, "database_unavailable")


def test_delete_with_s3_failing_forgets_nothing_and_the_sweeper_retries(rig: Rig) -> None:
    created = rig.upload("del")
    assert created.status_code == 201, created.text
    item = created.json()
    keys = {key for key in rig.state().objects if "/del/" in key}
    assert len(keys) == 2

    rig.s3.set_mode("refuse")
    tally(faults_injected=1)
    deleted = requests.delete(f"{rig.server.url}/v1/media/{item['id']}", headers=admin(), timeout=60)
    assert deleted.status_code == 204, deleted.text  # the row is gone; its objects are queued

    database = Database(rig.database_url)
    try:
        def queued() -> dict[str, PendingDelete]:
            with database.session() as session:
                rows = session.scalars(select(PendingDelete)).all()
                return {row.storage_key: row for row in rows if row.storage_key in keys}

        # Nothing forgotten: every object is queued, and the failed attempts are recorded with their error.
        assert set(queued()) == keys
        assert wait_until(lambda: all(row.attempts >= 2 and row.last_error for row in queued().values()), 30), \
            queued()
        assert _entity_objects(rig, "del") == keys  # still stored, still accounted for
        report = verify_service.verify(database, rig.bucket, grace=timedelta(0))
        assert not [k for k in report.stray if "/del/" in k] and report.missing == {}

        rig.heal()  # S3 is back: the sweeper's next rounds remove them, no request needed
        assert wait_until(lambda: not queued(), 30), queued()
        assert not _entity_objects(rig, "del")
    finally:
        database.dispose()
    tally(faults_survived=1)


def test_readiness_reports_each_backend(rig: Rig) -> None:
    rig.s3.set_mode("refuse")
    try:
        response = requests.get(f"{rig.server.url}/readyz", timeout=60)
        assert response.status_code == 503 and response.json()["checks"]["storage"] == "storage_unavailable"
    finally:
        rig.heal()
    assert requests.get(f"{rig.server.url}/readyz", timeout=60).status_code == 200
