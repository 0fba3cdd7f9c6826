"""Attacks on the tagging job's place among an item's jobs: it is not part of making the item, so it never
holds back the jobs that are."""

from __future__ import annotations

from mediahub.jobs.runner import execute
from mediahub.media import reprocessing
from mediahub.media.tagging import queue_tagging
from tests.jobs.helpers import ingest_only
from tests.media.conftest import make_runtime
from tests.support.taggers import FixedTagger


def test_a_queued_tagging_job_does_not_keep_reprocess_from_an_item(db, local_storage, tmp_path):
    before = make_runtime(db, local_storage, tmp_path, job_backoff_seconds=0)
    before.ingest.dispatch = None
    item = ingest_only(before)
    while execute(before.tasks) is not None:
        pass
    before.jobs.close()
    # A backfill queued its tagging job; no worker has run it yet (or the tagger keeps failing, with backoff).
    after = make_runtime(db, local_storage, tmp_path, tagger=FixedTagger(), image_sizes="thumbnail:100x100:crop",
                         job_backoff_seconds=0)
    after.ingest.dispatch = None
    with after.database.session() as session:
        queue_tagging(session, item.id, 5)
    assert reprocessing.queue_stale(after.database, after.settings, None) != [], "the stale item is reprocessed"
    after.jobs.close()
