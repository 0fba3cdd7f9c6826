"""Two identical uploads racing each other: one is stored, the other gets the 409."""

from __future__ import annotations

import threading

import pytest

from mediahub.errors import Conflict
from mediahub.media.ingest import IngestService
from tests.media.conftest import make_runtime
from tests.media.helpers import row_count, stored_keys, upload
from tests.support.corpus import CORPUS_DIR

PHOTO = CORPUS_DIR / "images/good/jpeg_flower.jpg"


@pytest.fixture
def racing_runtime(db, local_storage, tmp_path, monkeypatch):
    """Both uploads pass the first (read-only) duplicate check before either stores a byte."""
    runtime = make_runtime(db, local_storage, tmp_path, dedup_policy="reject")
    barrier = threading.Barrier(2, timeout=30)
    real_put_all = IngestService._put_all

    def put_all_together(self, objects, written):
        barrier.wait()
        return real_put_all(self, objects, written)

    monkeypatch.setattr(IngestService, "_put_all", put_all_together)
    yield runtime
    runtime.jobs.close()


def test_the_second_of_two_racing_identical_uploads_is_refused(racing_runtime):
    outcomes: list[object] = []

    def attempt() -> None:
        try:
            outcomes.append(upload(racing_runtime, PHOTO, target="property:RACE-1:gallery"))
        except Conflict as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=attempt) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    conflicts = [o for o in outcomes if isinstance(o, Conflict)]
    stored = [o for o in outcomes if not isinstance(o, Conflict)]
    assert len(conflicts) == 1 and len(stored) == 1, outcomes
    assert conflicts[0].code == "duplicate" and conflicts[0].details["duplicate_of"] == stored[0].public_id
    assert row_count(racing_runtime) == 1
    # The refused upload's objects were removed again: only the stored item's remain.
    keys = stored_keys(racing_runtime)
    assert stored[0].original_key in keys
    assert all(key.startswith(stored[0].original_key.rsplit(".", 1)[0]) for key in keys), keys
