"""Machine tags on every database: the tagging job after upload, its idempotent replacement that never overwrites
a moderator's decision, the filter by tag, the review, the backfill and the export."""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import select

from mediahub.config import Settings
from mediahub.db.models import Job, MediaItem, MediaTag
from mediahub.db.repositories import MediaRepository
from mediahub.db.repositories.tags import TagFilter, TagRepository
from mediahub.errors import Conflict, Forbidden, InvalidInput, NotFound
from mediahub.jobs.runner import JOB_NICENESS, execute
from mediahub.media import tagging
from mediahub.media.access import Principal
from mediahub.media.job_kinds import TAGGING, VARIANTS
from mediahub.pipeline.tagger import build_tagger
from mediahub.runtime import Runtime
from tests.jobs.helpers import ingest_only
from tests.media.conftest import make_runtime
from tests.media.helpers import reload, upload
from tests.support.corpus import CORPUS_DIR
from tests.support.faults import Passthrough
from tests.support.taggers import FixedTagger, room, thing

FLOWER = CORPUS_DIR / "images/good/jpeg_flower.jpg"  # 480x360: its renditions above 150 px are its original
HOPPER = CORPUS_DIR / "images/good/jpeg_hopper.jpg"  # 128x128: no rendition of 224 px
VIDEO = CORPUS_DIR / "video/webm_vp8_tiny_8x8.webm"
SIZES = "thumbnail:150x150:crop,small:400,medium:800"
MODERATOR = Principal(sub="MOD-1", roles=frozenset({"user", "moderator"}))
USER = Principal(sub="USR-1", roles=frozenset({"user"}))


@pytest.fixture
def tagger() -> FixedTagger:
    return FixedTagger()


@pytest.fixture
def tagged(db, local_storage, tmp_path, tagger):
    """A runtime on each database whose process has the fake tagger (jobs run in process)."""
    runtime = make_runtime(db, local_storage, tmp_path, tagger=tagger, image_sizes=SIZES, make_webp=False,
                           dedup_policy="allow")
    yield runtime
    runtime.jobs.close()


def tags_of(runtime, media_id: int) -> list[tuple[str, str, str, str, str]]:
    with runtime.database.session() as session:
        rows = TagRepository(session).of_items([media_id])[media_id]
    return sorted((row.kind, row.label, row.source, row.model, row.state) for row in rows)


def tagging_jobs(runtime, media_id: int) -> list[Job]:
    with runtime.database.session() as session:
        return list(session.scalars(select(Job).where(Job.media_id == media_id, Job.kind == TAGGING)))


@pytest.fixture
def photo(tmp_path) -> Path:
    """A 1000x750 photo-like JPEG: every rendition is smaller than it, so each is stored on its own."""
    path = tmp_path / "photo.jpg"
    noise = np.random.default_rng(7).integers(0, 256, (750, 1000, 3), dtype=np.uint8)
    Image.fromarray(noise).save(path, quality=90)
    return path


def test_a_listing_photo_is_tagged_by_a_job_that_leaves_the_item_ready_and_its_own_tags_alone(tagged, tagger, photo):
    item = upload(tagged, photo, tags=["sunny", "kitchen"])
    (job,) = tagging_jobs(tagged, item.id)
    assert (job.status, job.settles_item) == ("done", False)
    assert item.processing_status == "ready" and item.meta["pending"] == []
    assert item.tags == ["sunny", "kitchen"]  # what people typed stays what they typed
    assert tags_of(tagged, item.id) == [("object", "dishwasher", "machine", "fake-rooms@1", "suggested"),
                                        ("room", "kitchen", "machine", "fake-rooms@1", "suggested")]
    # The smallest whole-picture rendition with a short side of 224 px or more: small (400x300), not the original.
    assert tagger.seen == [(400, 300)]


def _niceness() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


class WatchedTagger(FixedTagger):
    """Keeps when each tagging ran (monotonic time) and the scheduling niceness of the thread that ran it."""

    def __init__(self) -> None:
        super().__init__()
        self.times: list[float] = []
        self.niceness: list[int] = []

    def tag(self, image: Path) -> list:
        self.times.append(time.monotonic())
        self.niceness.append(_niceness())
        return super().tag(image)


@pytest.mark.skipif(sys.platform != "linux", reason="a thread has a priority of its own on Linux")
def test_the_in_process_runner_tags_below_the_priority_of_the_upload(sqlite_db, local_storage, tmp_path, photo):
    """On a busy server the job of one upload must not slow the next: the runner's threads are nicer than the
    thread that ingests, and lowering them leaves the rest of the process as it was."""
    tagger = WatchedTagger()
    runtime = make_runtime(sqlite_db, local_storage, tmp_path, tagger=tagger, image_sizes=SIZES, make_webp=False)
    uploading = _niceness()
    try:
        upload(runtime, photo)
    finally:
        runtime.jobs.close()
    assert tagger.niceness == [min(19, uploading + JOB_NICENESS)]
    assert _niceness() == uploading and os.getpriority(os.PRIO_PROCESS, os.getpid()) == uploading


class HeldPut(Passthrough):
    """Holds the first put of an object under `entity` (an upload's original, which its ingest waits for)
    until `release` is set; `held` is set when it waits. The other puts go through."""

    def __init__(self, inner, entity: str) -> None:
        super().__init__(inner)
        self.entity = entity
        self.held, self.release = threading.Event(), threading.Event()

    def put(self, key: str, source, content_type: str):
        if f"/{self.entity}/" in key and not self.held.is_set():
            self.held.set()
            assert self.release.wait(60), "never released"
        return self.inner.put(key, source, content_type)


def test_the_in_process_runner_waits_for_a_lull_in_uploads(sqlite_db, local_storage, tmp_path, photo):
    """While an upload is being ingested, the job another upload queued waits: a batch's uploads are not slowed
    by the tagging of its first photos. Once the uploads stop, it runs."""
    tagger = WatchedTagger()
    storage = HeldPut(local_storage, "P-2")
    runtime = make_runtime(sqlite_db, storage, tmp_path, tagger=tagger, image_sizes=SIZES, make_webp=False)
    try:
        second = threading.Thread(target=upload, args=(runtime, photo, "property:P-2:gallery"))
        second.start()
        assert storage.held.wait(30)  # the second upload is being ingested
        first = ingest_only(runtime, photo, ("property", "P-1", "gallery"))
        assert [job.kind for job in tagging_jobs(runtime, first.id)] == [TAGGING]
        time.sleep(1.0)
        assert tagger.times == []  # queued, not started: an upload is still being ingested
        released = time.monotonic()
        storage.release.set()
        second.join(60)
        assert runtime.wait_for_jobs([first.id], timeout=60)
    finally:
        storage.release.set()
        runtime.jobs.close()
    assert len(tagger.times) == 2 and min(tagger.times) > released


def test_a_job_waits_for_a_lull_no_longer_than_the_setting(sqlite_db, local_storage, tmp_path, photo):
    """Under uploads that never stop, jobs still run, JOB_LULL_WAIT_SECONDS after they were queued."""
    tagger = WatchedTagger()
    storage = HeldPut(local_storage, "P-2")
    runtime = make_runtime(sqlite_db, storage, tmp_path, tagger=tagger, image_sizes=SIZES, make_webp=False,
                           job_lull_wait_seconds=0.5)
    try:
        second = threading.Thread(target=upload, args=(runtime, photo, "property:P-2:gallery"))
        second.start()
        assert storage.held.wait(30)
        first = ingest_only(runtime, photo, ("property", "P-1", "gallery"))
        assert runtime.wait_for_jobs([first.id], timeout=30)  # while the other upload is still held
        assert len(tagger.times) == 1 and second.is_alive()
    finally:
        storage.release.set()
        second.join(60)
        runtime.jobs.close()


def test_a_photo_whose_variants_a_job_makes_is_tagged_from_one_of_them_after_it(tagged, tagger, tmp_path):
    """A PNG (or HEIC) is decoded in full: its variants come from a job, and its tagging job only after them, so
    the tagger reads a rendition instead of decoding the original again."""
    path = tmp_path / "photo.png"
    noise = np.random.default_rng(3).integers(0, 256, (750, 1000, 3), dtype=np.uint8)
    Image.fromarray(noise).save(path)
    deferring = make_runtime(tagged.database, tagged.storage, tmp_path, tagger=tagger, image_sizes=SIZES,
                             make_webp=False, dedup_policy="allow", defer_slow_variants=True)
    try:
        item = upload(deferring, path)
    finally:
        deferring.jobs.close()
    (job,) = tagging_jobs(tagged, item.id)
    with tagged.database.session() as session:
        variants_job = session.scalar(select(Job).where(Job.media_id == item.id, Job.kind == VARIANTS))
    assert variants_job is not None and variants_job.id < job.id and job.status == "done"
    assert tagger.seen == [(400, 300)]
    assert [tag[1] for tag in tags_of(tagged, item.id)] == ["dishwasher", "kitchen"]


def test_without_a_rendition_of_224_px_the_tagger_reads_the_original(tagged, tagger):
    upload(tagged, HOPPER)
    assert tagger.seen == [(128, 128)]


@pytest.mark.parametrize(("target", "path"), [("user:U-1:avatar", FLOWER), ("post:P-9:media", FLOWER),
                                              ("property:P-1:gallery", VIDEO)])
def test_fields_without_room_tags_and_videos_get_no_tagging_job(tagged, target, path):
    item = upload(tagged, path, target=target)
    assert tagging_jobs(tagged, item.id) == [] and tags_of(tagged, item.id) == []


def test_a_process_without_a_tagger_queues_no_tagging_job(db, local_storage, tmp_path):
    runtime = make_runtime(db, local_storage, tmp_path, image_sizes=SIZES)
    try:
        item = upload(runtime, FLOWER)
        assert tagging_jobs(runtime, item.id) == []
    finally:
        runtime.jobs.close()


def test_a_job_run_by_a_process_without_a_tagger_fails_and_says_why(tagged, db, local_storage, tmp_path):
    tagged.ingest.dispatch = None  # the job stays queued for the other process
    item = ingest_only(tagged, FLOWER)
    bare = make_runtime(db, local_storage, tmp_path, job_backoff_seconds=0)
    try:
        job = execute(bare.tasks)
        assert (job.kind, job.status, job.attempts) == (TAGGING, "queued", 1)  # retried, until a tagger runs it
        assert "no tagger" in job.last_error
        assert reload(tagged, item).processing_status == "ready"  # the item is not failed by its tags
    finally:
        bare.jobs.close()


def test_a_rerun_replaces_the_suggestions_and_keeps_what_a_moderator_decided(tagged, tagger):
    item = upload(tagged, FLOWER)
    service = tagging.TagService(tagged.database)
    rows = {(row.kind, row.label): row for row in service.of_item(item.id, MODERATOR)}
    service.reject(item.id, rows[("object", "dishwasher")].id, MODERATOR)
    tagger.tags = [room("bathroom", 0.8), thing("dishwasher", 0.6), thing("sink", 0.7)]
    for _ in range(2):  # idempotent: a second run (a retry, a redo) leaves the same rows
        assert tagging.record_machine_tags(tagged.database, item.id, tagger.tags)
        assert tags_of(tagged, item.id) == [
            ("object", "dishwasher", "machine", "fake-rooms@1", "rejected"),  # decided: never overwritten
            ("object", "sink", "machine", "fake-rooms@1", "suggested"),
            ("room", "bathroom", "machine", "fake-rooms@1", "suggested")]  # the undecided kitchen is replaced


def test_an_item_deleted_meanwhile_is_nothing_to_do_and_its_tags_go_with_it(tagged, tagger):
    item = upload(tagged, FLOWER)
    assert tags_of(tagged, item.id)
    with tagged.database.session() as session:
        session.delete(session.get(MediaItem, item.id))
    with tagged.database.session() as session:
        assert session.scalars(select(MediaTag).where(MediaTag.media_id == item.id)).all() == []
    assert tagging.record_machine_tags(tagged.database, item.id, tagger.tags) is False
    assert tags_of(tagged, item.id) == []


def test_a_tagger_answer_that_cannot_be_stored_fails_the_job(tagged):
    item = upload(tagged, FLOWER)
    for bad in ([room("x" * 65, 0.5)], [room("kitchen", 1.5)], [room("", 0.5)]):
        with pytest.raises(ValueError):
            tagging.record_machine_tags(tagged.database, item.id, bad)


# ------------------------------------------------------------------ review


def test_review_accept_reject_and_correct(tagged):
    item = upload(tagged, FLOWER, verified=True)  # approved: anyone may see it, only moderators review it
    service = tagging.TagService(tagged.database)
    rows = {(row.kind, row.label): row for row in service.of_item(item.id, MODERATOR)}
    kitchen = rows[("room", "kitchen")]
    service.accept(item.id, kitchen.id, MODERATOR)
    assert ("room", "kitchen", "machine", "fake-rooms@1", "accepted") in tags_of(tagged, item.id)
    # Correcting the room keeps the machine's as rejected, beside the moderator's own.
    after = service.correct_room(item.id, "bedroom", MODERATOR)
    assert [(r.kind, r.label, r.source, r.state, r.decided_by) for r in after if r.kind == "room"] == [
        ("room", "bedroom", "moderator", "accepted", "MOD-1"), ("room", "kitchen", "machine", "rejected", "MOD-1")]
    # Correcting to the machine's label accepts its row, and the moderator's room goes.
    service.correct_room(item.id, "kitchen", MODERATOR)
    assert [t for t in tags_of(tagged, item.id) if t[0] == "room"] == [
        ("room", "kitchen", "machine", "fake-rooms@1", "accepted")]
    with pytest.raises(InvalidInput) as bad:
        service.correct_room(item.id, "unknown", MODERATOR)
    assert bad.value.code == "unknown_room_label"
    with pytest.raises(Forbidden):
        service.accept(item.id, kitchen.id, USER)
    with pytest.raises(NotFound):
        service.accept(item.id, 10**9, MODERATOR)
    with pytest.raises(NotFound):
        service.accept(10**9, kitchen.id, MODERATOR)
    service.correct_room(item.id, "bathroom", MODERATOR)
    own = next(r for r in service.of_item(item.id, MODERATOR) if r.source == "moderator")
    with pytest.raises(Conflict):
        service.reject(item.id, own.id, MODERATOR)


# ------------------------------------------------------------------ filter


def _listed(runtime, *labels: str, min_score: float = 0.5) -> set[int]:
    with runtime.database.session() as session:
        items, total = MediaRepository(session).list_for_entity("property", "P-1", limit=100,
                                                                having=TagFilter(labels, min_score))
    assert total == len(items)
    return {item.id for item in items}


def test_the_tag_filter_on_every_database(tagged, tagger):
    service = tagging.TagService(tagged.database)
    typed = upload(tagged, FLOWER, tags=["bedroom", "sunny"])  # machine: kitchen 0.9
    tagger.tags = [room("kitchen", 0.3), thing("oven", 0.9)]
    unsure = upload(tagged, FLOWER)
    tagger.tags = [room("unknown", 0.9)]
    unknown = upload(tagged, FLOWER)
    tagger.tags = [room("kitchen", 0.95)]
    corrected = upload(tagged, FLOWER)
    service.correct_room(corrected.id, "bathroom", MODERATOR)
    rejected = upload(tagged, FLOWER)
    service.reject(rejected.id, next(r.id for r in service.of_item(rejected.id, MODERATOR)), MODERATOR)
    tagged_again = upload(tagged, FLOWER)  # a suggestion under a later model after its room was decided
    service.correct_room(tagged_again.id, "bedroom", MODERATOR)
    tagging.record_machine_tags(tagged.database, tagged_again.id, [room("kitchen", 0.99, "fake-rooms@2")])

    assert _listed(tagged, "kitchen") == {typed.id}  # suggestions above the threshold on undecided rooms only
    assert _listed(tagged, "kitchen", min_score=0.2) == {typed.id, unsure.id}
    assert _listed(tagged, "bedroom") == {typed.id, tagged_again.id}  # a user tag; a moderator's room
    assert _listed(tagged, "bathroom") == {corrected.id}
    assert _listed(tagged, "bedroom", "sunny") == {typed.id}  # every label given
    assert _listed(tagged, "oven") == set()  # a suggested object is provenance, not yet a tag
    oven = next(r for r in service.of_item(unsure.id, MODERATOR) if r.label == "oven")
    service.accept(unsure.id, oven.id, MODERATOR)
    assert _listed(tagged, "oven") == {unsure.id}  # accepted: any kind
    assert _listed(tagged, "unknown") == set() and unknown.id
    assert _listed(tagged, "Kitchen") == set()  # labels match as written


# ------------------------------------------------------------------ backfill and export


def test_backfill_queues_the_images_without_tags_from_the_current_model(db, local_storage, tmp_path):
    plain = make_runtime(db, local_storage, tmp_path, image_sizes=SIZES, dedup_policy="allow")
    try:
        items = [upload(plain, FLOWER) for _ in range(3)]
        avatar = upload(plain, FLOWER, target="user:U-1:avatar")
        video = upload(plain, VIDEO)
        other = upload(plain, FLOWER, target="community:C-1:photos")
    finally:
        plain.jobs.close()
    database = plain.database

    def run(**options) -> list[list[int]]:
        return [batch.job_ids for batch in tagging.backfill(database, "fake-rooms@1", page=2, **options)]

    first = run(limit=2)
    assert [len(ids) for ids in first] == [2]  # stops at the limit
    again = run()  # the queued ones are coming: not queued twice
    queued = {job.media_id for ids in first + again for job in _jobs(database, ids)}
    assert queued == {items[0].id, items[1].id, items[2].id, other.id}
    assert avatar.id not in queued and video.id not in queued
    assert run() == [[], []]  # two pages of two candidates, nothing left to queue
    assert [len(ids) for ids in run(entity_type="community")] == [0]
    with pytest.raises(InvalidInput):
        run(entity_type="user")


def _jobs(database, ids: list[int]) -> list[Job]:
    with database.session() as session:
        return list(session.scalars(select(Job).where(Job.id.in_(ids))))


def test_backfill_skips_what_the_model_tagged_unless_redone(tagged):
    item = upload(tagged, FLOWER)
    assert [b.job_ids for b in tagging.backfill(tagged.database, "fake-rooms@1")] == [[]]
    (batch,) = tagging.backfill(tagged.database, "fake-rooms@2")
    assert len(batch.job_ids) == 1
    tagged.jobs.dispatch(batch.job_ids)
    assert tagged.wait_for_jobs([item.id], timeout=60)
    assert len([b for b in tagging.backfill(tagged.database, "fake-rooms@1", redo=True)][0].job_ids) == 1


def test_the_export_has_each_decision_with_what_the_machine_said(tagged, tagger):
    service = tagging.TagService(tagged.database)
    accepted, corrected, rejected = (upload(tagged, FLOWER) for _ in range(3))
    rows = {item.id: {(r.kind, r.label): r for r in service.of_item(item.id, MODERATOR)}
            for item in (accepted, corrected, rejected)}
    service.accept(accepted.id, rows[accepted.id][("room", "kitchen")].id, MODERATOR)
    service.correct_room(corrected.id, "bathroom", MODERATOR)
    service.reject(rejected.id, rows[rejected.id][("object", "dishwasher")].id, MODERATOR)
    lines = list(tagging.decided_labels(tagged.database, page=1))
    shown = sorted((line["media_public_id"], line["kind"], line["label"], line["decision"], line["machine_label"])
                   for line in lines)
    assert shown == sorted([
        (accepted.public_id, "room", "kitchen", "accepted", "kitchen"),
        (corrected.public_id, "room", "bathroom", "corrected", "kitchen"),
        (rejected.public_id, "object", None, "rejected", "dishwasher")])
    line = next(line for line in lines if line["decision"] == "corrected")
    assert line["sha256"] == corrected.sha256 and line["model"] == "fake-rooms@1" and line["machine_score"] == 0.9
    assert line["decided_by"] == "MOD-1" and line["decided_at"]
    assert set(line) == set(tagging.EXPORT_FIELDS)


# ------------------------------------------------------------------ composition


def _settings(tmp_path, **overrides) -> Settings:
    return Settings(_env_file=None, database_url=f"sqlite:///{tmp_path / 'runtime.db'}", media_root=tmp_path / "media",
                    temp_dir=tmp_path / "tmp", **overrides)


@pytest.mark.parametrize("enabled", [True, False])
def test_a_runtime_has_the_classifier_the_settings_install(tmp_path, enabled):
    """Runtime.build composes the pipeline's `build_tagger`: its tagger (none when off or its model is missing here)
    and its state; uploads get tagging jobs exactly when there is one."""
    settings = _settings(tmp_path, tagging_enabled=enabled, models_dir=tmp_path / "models")
    built = Runtime.build(settings)
    try:
        tagger, status = build_tagger(settings)
        assert (type(built.tasks.tagger), built.tagging) == (type(tagger), status)
        assert built.ingest.tags_images is (tagger is not None)
        assert built.tagging == ("model_missing" if enabled else "off")  # no model in this test's MODELS_DIR
    finally:
        built.close()


def test_a_runtime_given_a_tagger_uses_it(tmp_path):
    fake = FixedTagger()
    given = Runtime.build(_settings(tmp_path), fake)
    try:
        assert (given.tasks.tagger, given.tagging, given.ingest.tags_images) == (fake, "ok", True)
    finally:
        given.close()
