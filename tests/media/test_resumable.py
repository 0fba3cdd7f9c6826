"""Resumable uploads at the service level: faults during the ingest, and an item made exactly once."""

from __future__ import annotations

import pytest

from mediahub.db.repositories import MediaRepository
from mediahub.entities import Target
from mediahub.errors import StorageUnavailable
from mediahub.media.access import Principal
from tests.media.conftest import make_runtime
from tests.support.corpus import CORPUS_DIR
from tests.support.faults import FailingPuts

HOPPER = CORPUS_DIR / "images/good/jpeg_hopper.jpg"
OWNER = Principal("USR-1")


def _create(runtime, data: bytes) -> str:
    return runtime.tus.create(OWNER, Target.parse("user", "USR-1", "avatar"), {"alt_text": "me"}, len(data)).public_id


def _send(runtime, public_id: str, data: bytes):
    appending = runtime.tus.start_append(OWNER, public_id, 0)
    try:
        appending.write(data)
        appending.close(whole=True)
        return runtime.tus.finish_if_complete(appending)
    finally:
        appending.end()


def test_a_storage_fault_at_ingest_is_not_the_outcome(sqlite_db, local_storage, tmp_path) -> None:
    """The store fails once while the item is stored: the upload keeps its bytes and no outcome, and the
    client's next question ingests it."""
    runtime = make_runtime(sqlite_db, FailingPuts(local_storage, fail_on=1), tmp_path)
    try:
        data = HOPPER.read_bytes()
        public_id = _create(runtime, data)
        with pytest.raises(StorageUnavailable):
            _send(runtime, public_id, data)
        with runtime.database.session() as session:
            assert MediaRepository(session).count() == 0
        _, outcome = runtime.tus.status(OWNER, public_id)
        assert outcome is not None and outcome.media_id is not None and outcome.error is None
    finally:
        runtime.close()


def test_asking_again_never_makes_a_second_item(sqlite_db, local_storage, tmp_path) -> None:
    runtime = make_runtime(sqlite_db, local_storage, tmp_path)
    try:
        data = HOPPER.read_bytes()
        public_id = _create(runtime, data)
        outcome = _send(runtime, public_id, data)
        answers = {runtime.tus.status(OWNER, public_id)[1].media_id for _ in range(3)}
        assert answers == {outcome.media_id}
        with runtime.database.session() as session:
            item = MediaRepository(session).get(outcome.media_id)
            assert item.alt_text == "me" and item.uploaded_by == "USR-1"
            assert MediaRepository(session).count() == 1
    finally:
        runtime.close()
