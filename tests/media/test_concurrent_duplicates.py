"""Two identical uploads racing each other: one is stored, the other gets the 409."""

from __future__ import annotations

import threading
from contextlib import contextmanager

import pytest

from mediahub.errors import Conflict
from tests.media.conftest import make_runtime
from tests.media.helpers import row_count, stored_keys, upload
from tests.support.concurrency import run_together
from tests.support.corpus import CORPUS_DIR

PHOTO = CORPUS_DIR / "images/good/jpeg_flower.jpg"


class CommitsMeet:
    """A real database whose first two locked sessions (two uploads' commits) open only once both are asked for.

    By then both uploads have passed the first (read-only) duplicate check and stored their objects.
    """

    def __init__(self, inner) -> None:
        self.inner = inner
        self.meeting = threading.Barrier(2, timeout=30)
        self._lock = threading.Lock()
        self._to_meet = 2

    @contextmanager
    def locked_session(self, name):
        with self._lock:
            meets, self._to_meet = self._to_meet > 0, self._to_meet - 1
        if meets:
            self.meeting.wait()
        with self.inner.locked_session(name) as session:
            yield session

    def __getattr__(self, name):
        return getattr(self.inner, name)


@pytest.fixture
def racing_runtime(db, local_storage, tmp_path):
    runtime = make_runtime(CommitsMeet(db), local_storage, tmp_path, dedup_policy="reject")
    yield runtime
    runtime.jobs.close()


def test_the_second_of_two_racing_identical_uploads_is_refused(racing_runtime):
    outcomes: list[object] = []

    def attempt() -> None:
        try:
            outcomes.append(upload(racing_runtime, PHOTO, target="property:RACE-1:gallery"))
        except Conflict as exc:
            outcomes.append(exc)

    run_together([attempt, attempt])
    conflicts = [o for o in outcomes if isinstance(o, Conflict)]
    stored = [o for o in outcomes if not isinstance(o, Conflict)]
    assert len(conflicts) == 1 and len(stored) == 1, outcomes
    assert conflicts[0].code == "duplicate" and conflicts[0].details["duplicate_of"] == stored[0].public_id
    assert row_count(racing_runtime) == 1
    # The refused upload's objects were removed again: only the stored item's remain.
    keys = stored_keys(racing_runtime)
    assert stored[0].original_key in keys
    assert all(key.startswith(stored[0].original_key.rsplit(".", 1)[0]) for key in keys), keys
