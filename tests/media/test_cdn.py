"""The CDN purge hook: every change that makes an approved item's CDN URLs stale queues one call per URL
in its own transaction, and the `cdn_purge` jobs make those calls to a real HTTP server, retrying failures.

The jobs are run here by hand (`execute`), one after the other, so each test sees exactly what was sent.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from mediahub.db.models import TRANSFORM, Job, MediaItem, MediaVariant
from mediahub.db.repositories.job_queue import enqueue
from mediahub.entities import Target
from mediahub.jobs.runner import execute
from mediahub.media.access import Principal
from mediahub.media.ingest import UploadRequest
from mediahub.media.job_kinds import CDN_PURGE, REPROCESS, VARIANTS
from mediahub.media.manage import MediaService
from mediahub.media.moderation import ModerationService
from mediahub.pipeline.intake import iter_file
from mediahub.runtime import Runtime
from tests.jobs.helpers import jobs_of
from tests.media.conftest import make_runtime
from tests.media.helpers import reload
from tests.support.cdn import FakeCdn
from tests.support.corpus import CORPUS_DIR

CDN = "https://cdn.example.net"
TOKEN = "a-purge-token-for-these-tests"
PHOTO = CORPUS_DIR / "images/good/jpeg_flower.jpg"
OTHER_PHOTO = CORPUS_DIR / "images/good/jpeg_hopper.jpg"
SMALL_HEIF = CORPUS_DIR / "images/good/heif_samplefilehub_640x426.heif"  # a raw upload: re-encoded by a job
PRESETS = ("thumbnail", "small", "original")  # the sizes below, and the stored original's preset
SUFFIXES = ("", ".avif", ".webp", ".jpg", ".png")  # the negotiated URL, then one per format
MODERATOR = Principal("MOD-1", frozenset({"user", "moderator"}))
ADMIN = Principal("ADM-1", frozenset({"user", "admin"}))


@pytest.fixture
def build(sqlite_db, local_storage, tmp_path, fake_cdn: FakeCdn):
    """build(**settings) -> a runtime purging through `fake_cdn`, whose jobs wait until `run_jobs`."""
    made: list[Runtime] = []

    def make(**overrides: Any) -> Runtime:
        settings = {"cdn_base_url": CDN, "cdn_purge_url": fake_cdn.url, "cdn_purge_token": TOKEN,
                    "job_backoff_seconds": 0, "image_sizes": "thumbnail:150x150:crop,small:400", "make_webp": False,
                    **overrides}
        runtime = make_runtime(sqlite_db, local_storage, tmp_path, **settings)
        runtime.ingest.dispatch = None
        runtime.cdn.dispatch = None
        made.append(runtime)
        return runtime

    yield make
    for runtime in made:
        runtime.jobs.close()


def ingest(runtime: Runtime, path: Path = PHOTO, target: str = "property:P-1:gallery",
           verified: bool = True) -> MediaItem:
    """An upload as a verified user makes it: approved at once (unverified: pending)."""
    request = UploadRequest(Target.parse(*target.split(":")), uploaded_by="USR-1", verified=verified)
    with path.open("rb") as fh:
        item = runtime.ingest.ingest(iter_file(fh), request)
    return reload(runtime, item)


def run_jobs(runtime: Runtime) -> None:
    """Run due jobs until none is left (retries are due at once: no backoff here)."""
    while execute(runtime.tasks) is not None:
        pass


def purge_jobs(runtime: Runtime) -> list[Job]:
    with runtime.database.session() as session:
        return list(session.scalars(select(Job).where(Job.kind == CDN_PURGE).order_by(Job.id)))


def expected(item: MediaItem, reason: str, *, file_keys: list[str] | None = None) -> list[str]:
    """The bodies a purge of the item sends, written out here from the URL layout the API documents."""
    keys = item.keys() if file_keys is None else file_keys
    urls = [f"{CDN}/v1/media/files/{key}" for key in keys]
    urls += [f"{CDN}/v1/images/{item.public_id}/{preset}{suffix}" for preset in PRESETS for suffix in SUFFIXES]
    bodies = [{"url": url, "reason": reason} for url in urls]
    bodies.append({"prefix": f"{CDN}/v1/images/{item.public_id}/t/", "reason": reason})
    return sorted(json.dumps(body, sort_keys=True) for body in bodies)


def sent(cdn: FakeCdn) -> list[str]:
    return sorted(json.dumps(body, sort_keys=True) for body in cdn.bodies)


def moderation(runtime: Runtime, hide_threshold: int = 0) -> ModerationService:
    return ModerationService(runtime.database, runtime.storage, runtime.cdn, hide_threshold=hide_threshold,
                             report_rate_limit=0)


def test_a_reject_purges_every_url_the_item_had_with_the_token(build, fake_cdn: FakeCdn) -> None:
    runtime = build()
    item = ingest(runtime)
    assert item.moderation_status == "approved" and len(item.keys()) > 1

    moderation(runtime).decide(item.id, MODERATOR, "rejected", "not the property")

    assert fake_cdn.calls == [], "nothing is sent before the jobs run"
    assert reload(runtime, item).processing_status == "ready", "purges are not work on the item"
    run_jobs(runtime)
    assert sent(fake_cdn) == expected(item, "reject")
    assert {(call.method, call.path) for call in fake_cdn.calls} == {("POST", "/purge")}
    assert {call.headers["authorization"] for call in fake_cdn.calls} == {f"Bearer {TOKEN}"}
    assert {call.headers["content-type"] for call in fake_cdn.calls} == {"application/json"}
    assert {job.status for job in purge_jobs(runtime)} == {"done"}


def test_a_transform_result_is_purged_through_the_prefix_not_its_object_url(
        build, fake_cdn: FakeCdn) -> None:
    runtime = build()
    item = ingest(runtime)
    with runtime.database.session() as session:  # a stored result, as a signed transform leaves it
        session.add(MediaVariant(media_id=item.id, name="t-0123abcd", format="webp", kind=TRANSFORM,
                                 storage_key=f"{item.original_key}-t0123abcd.webp", width=64, height=64,
                                 byte_size=100, content_type="image/webp"))

    moderation(runtime).decide(item.id, MODERATOR, "rejected", None)

    run_jobs(runtime)
    assert sent(fake_cdn) == expected(item, "reject"), "the item's listed URLs and the transform prefix, no more"


def test_a_hide_on_reports_purges(build, fake_cdn: FakeCdn) -> None:
    runtime = build()
    item = ingest(runtime)

    hidden = moderation(runtime, hide_threshold=1).report(item.id, Principal("USR-2", frozenset({"user"})), "spam")

    assert hidden.moderation_status == "flagged"
    run_jobs(runtime)
    assert sent(fake_cdn) == expected(item, "reject")


def test_an_edit_that_needs_moderation_again_purges(build, fake_cdn: FakeCdn) -> None:
    runtime = build()
    item = ingest(runtime)
    owner = Principal("USR-1", frozenset({"user"}))  # unverified: new public text is checked

    edited = MediaService(runtime.database, runtime.storage, runtime.cdn).update(item.id, owner, {"caption": "new"})

    assert edited.item.moderation_status == "pending"
    run_jobs(runtime)
    assert sent(fake_cdn) == expected(item, "reject")


def test_a_focal_point_change_purges_and_so_does_the_re_render_it_queues(build, fake_cdn: FakeCdn) -> None:
    runtime = build()
    item = ingest(runtime)
    media = MediaService(runtime.database, runtime.storage, runtime.cdn, job_max_attempts=2)
    owner = Principal("USR-1", frozenset({"user"}))

    media.update(item.id, owner, {"focal_point": {"x": 0.2, "y": 0.3}})
    run_jobs(runtime)

    # At the change, and when the re-render replaces the variants the old crops were served from.
    assert sent(fake_cdn) == sorted(expected(item, "focal") + expected(item, "replace"))
    calls = len(fake_cdn.calls)
    media.update(item.id, owner, {"focal_point": {"x": 0.2, "y": 0.3}})
    run_jobs(runtime)
    assert len(fake_cdn.calls) == calls, "an unchanged point changes nothing"


def test_deletes_one_by_one_and_in_a_batch_purge_each_item(build, fake_cdn: FakeCdn) -> None:
    runtime = build()
    items = [ingest(runtime, target=f"property:P-{n}:gallery") for n in range(3)]
    media = MediaService(runtime.database, runtime.storage, runtime.cdn)

    media.delete(items[0].id, ADMIN)
    assert media.delete_many([items[1].id, items[2].id, 999_999], ADMIN)[:2] == [None, None]

    run_jobs(runtime)
    assert sent(fake_cdn) == sorted(body for item in items for body in expected(item, "delete"))


def test_an_approved_item_replacing_another_in_its_slot_purges_the_one_it_removed(
        build, fake_cdn: FakeCdn) -> None:
    runtime = build()
    first = ingest(runtime, target="user:USR-1:avatar")
    second = ingest(runtime, OTHER_PHOTO, target="user:USR-1:avatar")

    assert reload(runtime, first) is None and second.moderation_status == "approved"
    run_jobs(runtime)
    assert sent(fake_cdn) == expected(first, "delete")


def test_the_re_encode_replacing_a_raw_original_purges(build, fake_cdn: FakeCdn) -> None:
    runtime = build(defer_slow_variants=True)
    item = ingest(runtime, SMALL_HEIF)
    assert item.meta["original"] == "raw" and item.moderation_status == "approved"
    (variants_job,) = [job.id for job in jobs_of(runtime, item.id) if job.kind == VARIANTS]
    dispatched: list[int] = []

    assert execute(runtime.tasks, variants_job, dispatch=dispatched.extend).status == "done"

    assert dispatched == [job.id for job in purge_jobs(runtime)] and dispatched, "the task's purges are sent on"
    run_jobs(runtime)
    # Its raw original never had a URL; its presets and transforms did.
    assert sent(fake_cdn) == expected(item, "replace", file_keys=[])


def test_a_reprocess_purges_the_urls_of_the_replaced_variants(build, fake_cdn: FakeCdn) -> None:
    runtime = build()
    item = ingest(runtime)
    with runtime.database.session() as session:
        enqueue(session, REPROCESS, media_id=item.id)

    run_jobs(runtime)

    assert set(reload(runtime, item).keys()) != set(item.keys()), "the variants got new objects"
    assert sent(fake_cdn) == expected(item, "replace")


def test_a_first_approval_or_a_change_to_an_item_never_approved_sends_nothing(
        build, fake_cdn: FakeCdn) -> None:
    runtime = build()
    approved_later = ingest(runtime, verified=False)
    rejected = ingest(runtime, target="property:P-2:gallery", verified=False)
    assert approved_later.moderation_status == rejected.moderation_status == "pending"

    moderation(runtime).decide(approved_later.id, MODERATOR, "approved", None)
    moderation(runtime).decide(rejected.id, MODERATOR, "rejected", None)
    MediaService(runtime.database, runtime.storage, runtime.cdn).delete(rejected.id, ADMIN)

    run_jobs(runtime)
    assert purge_jobs(runtime) == [] and fake_cdn.calls == []


def test_without_a_purge_url_nothing_is_queued(build, fake_cdn: FakeCdn) -> None:
    runtime = build(cdn_purge_url=None, cdn_purge_token=None)
    item = ingest(runtime)

    moderation(runtime).decide(item.id, MODERATOR, "rejected", None)
    MediaService(runtime.database, runtime.storage, runtime.cdn).delete(item.id, ADMIN)

    run_jobs(runtime)
    assert purge_jobs(runtime) == [] and fake_cdn.calls == []


def test_failed_calls_are_retried_until_the_cdn_answers(build, fake_cdn: FakeCdn) -> None:
    runtime = build(job_max_attempts=5)
    item = ingest(runtime)
    fake_cdn.fail_first = 3

    moderation(runtime).decide(item.id, MODERATOR, "rejected", None)
    run_jobs(runtime)

    assert sent(fake_cdn) == expected(item, "reject"), "every URL purged once it answered 200"
    assert [call.answered for call in fake_cdn.calls].count(503) == 3
    jobs = purge_jobs(runtime)
    assert {job.status for job in jobs} == {"done"}
    assert sum(job.attempts for job in jobs) == len(jobs) + 3


def test_a_call_that_outlasts_its_timeout_fails_and_is_retried(build, fake_cdn: FakeCdn) -> None:
    runtime = build(cdn_purge_timeout_seconds=0.5)
    item = ingest(runtime)
    fake_cdn.hang_first = 1  # held open until the test ends

    moderation(runtime).decide(item.id, MODERATOR, "rejected", None)
    run_jobs(runtime)

    assert sent(fake_cdn) == expected(item, "reject")
    assert sorted(job.attempts for job in purge_jobs(runtime))[-1] == 2


def test_a_cdn_that_keeps_failing_leaves_the_job_failed_with_its_answer(build, fake_cdn: FakeCdn) -> None:
    runtime = build(job_max_attempts=2)
    item = ingest(runtime)
    fake_cdn.fail_first = 10**6

    moderation(runtime).decide(item.id, MODERATOR, "rejected", None)
    run_jobs(runtime)

    jobs = purge_jobs(runtime)
    assert {(job.status, job.attempts) for job in jobs} == {("failed", 2)}
    assert all("503" in job.last_error for job in jobs)
