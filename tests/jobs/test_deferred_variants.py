"""Uploads whose variants are left to a job (sources decoded in full: PNG, HEIC, WebP): what the upload
answers, what may be served meanwhile, and what the job leaves."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from mediahub.errors import NotFound
from mediahub.jobs.runner import execute
from mediahub.media import verify as verify_service
from mediahub.media.access import Principal
from mediahub.media.files import FileAccess
from mediahub.media.job_kinds import VARIANTS
from mediahub.pipeline.fingerprint import hamming
from mediahub.pipeline.image import process_image
from mediahub.pipeline.options import image_options
from mediahub.pipeline.sniff import sniff
from mediahub.storage.signing import sign
from tests.jobs.helpers import ingest_only, jobs_of
from tests.media.conftest import make_runtime
from tests.media.helpers import reload, stored_keys
from tests.support.corpus import CORPUS_DIR
from tests.support.faults import FailingPuts

SIZES = {"thumbnail", "small", "medium", "large"}
PNG = CORPUS_DIR / "images/good/png_peppers_rgba.png"
HEIC = CORPUS_DIR / "images/good/heic_iphone13_3024x4032.heic"
JPEG = CORPUS_DIR / "images/good/jpeg_flower.jpg"


@pytest.fixture
def deferring(sqlite_db, local_storage, tmp_path):
    """Deferral on, jobs left queued until the test runs them."""
    runtime = make_runtime(sqlite_db, local_storage, tmp_path, defer_slow_variants=True, job_backoff_seconds=0)
    runtime.ingest.dispatch = None
    yield runtime
    runtime.jobs.close()


def names(item) -> set[str]:
    return {v.name for v in item.variants}


@pytest.mark.parametrize("path", [PNG, HEIC], ids=lambda p: p.suffix)
def test_a_full_decode_source_answers_before_its_variants_and_the_job_completes_it(deferring, path):
    runtime = deferring
    item = ingest_only(runtime, path)
    assert item.variants == [] and item.processing_status == "queued"
    assert item.meta["pending"] == [VARIANTS]
    assert item.image_hash and item.pixel_sha256, "the duplicate check ran in the upload"
    (job,) = jobs_of(runtime, item.id)
    assert (job.kind, job.status) == (VARIANTS, "queued")
    assert execute(runtime.tasks).status == "done"
    done = reload(runtime, item)
    assert done.processing_status == "ready" and done.meta["pending"] == []
    assert names(done) == SIZES
    formats = {v.format for v in done.variants}
    assert "webp" in formats and formats - {"webp"} <= {"jpeg", "png"}, "one job: the base formats and WebP"
    report = verify_service.verify(runtime.database, runtime.storage, grace=timedelta(0))
    assert report.clean, (report.stray, report.missing)


def test_a_jpeg_still_gets_its_variants_in_the_upload(deferring):
    item = ingest_only(deferring, JPEG)
    assert names(item) == SIZES and {v.format for v in item.variants} == {"jpeg"}
    assert item.meta["pending"] == ["renditions"], "only WebP is left to a job"
    assert [job.kind for job in jobs_of(deferring, item.id)] == ["renditions"]


def test_nothing_pending_is_served_and_a_failed_job_is_retried(deferring, tmp_path):
    runtime = deferring
    item = ingest_only(runtime, PNG)
    with pytest.raises(NotFound):
        _variant_object(runtime, item, "small")
    original = runtime.storage.get(item.original_key)
    assert original.startswith(b"\x89PNG") and b"eXIf" not in original and b"tEXt" not in original
    broken = make_runtime(runtime.database, FailingPuts(runtime.storage, fail_on=1), tmp_path,
                          defer_slow_variants=True, job_backoff_seconds=0)
    try:
        failed = execute(broken.tasks)
    finally:
        broken.jobs.close()
    assert failed.status == "queued" and failed.attempts == 1, "a failed job goes back to the queue"
    assert reload(runtime, item).variants == [] and reload(runtime, item).processing_status == "queued"
    assert stored_keys(runtime) == {item.original_key}, "the failed run left nothing behind"
    assert execute(runtime.tasks).status == "done"
    assert names(reload(runtime, item)) == SIZES


def _variant_object(runtime, item, name):
    current = reload(runtime, item)
    matches = [v for v in current.variants if v.name == name]
    if not matches:
        raise NotFound(f"no {name} variant yet")
    return runtime.storage.get(matches[0].storage_key)


@pytest.mark.parametrize("path", [PNG, HEIC], ids=lambda p: p.suffix)
def test_the_deferred_fingerprint_matches_the_inline_one(path, tmp_path):
    """Dedup compares uploads made either way: the pHash of the lone hash render is the one of the variant chain."""
    from mediahub.config import Settings

    settings = Settings(_env_file=None, temp_dir=tmp_path, defer_slow_variants=True)
    sniffed = sniff(path.read_bytes()[:4096])
    inline = process_image(path, sniffed, image_options(settings))
    deferred = process_image(path, sniffed, image_options(settings, upload=True))
    assert deferred.variants_deferred and not inline.variants_deferred and deferred.variants == []
    assert deferred.pixel_sha256 == inline.pixel_sha256
    assert hamming(int(deferred.phash, 16), int(inline.phash, 16)) <= 4


def test_a_heic_is_kept_as_sent_privately_until_its_re_encode_takes_its_place(deferring):
    runtime = deferring
    item = ingest_only(runtime, HEIC)
    raw_key = item.original_key
    assert item.meta["original"] == "raw" and raw_key.endswith(".upload")
    assert runtime.storage.get(raw_key) == HEIC.read_bytes(), "the upload as sent, metadata and all"
    files = FileAccess(runtime.database, runtime.settings.signing_key)
    admin = Principal("ADM-1", roles=frozenset({"admin"}))
    with pytest.raises(NotFound):  # nobody reads it, not even an admin
        files.resolve(raw_key, None, None, principal=admin)
    expires = int(time.time()) + 60
    with pytest.raises(NotFound):  # nor a signed link
        files.resolve(raw_key, expires, sign(raw_key, expires, runtime.settings.signing_key), principal=None)
    assert execute(runtime.tasks).status == "done"
    done = reload(runtime, item)
    assert done.meta["original"] == "reencoded" and done.content_type == "image/jpeg"
    assert done.original_key == raw_key.removesuffix(".upload") + ".jpg"
    assert files.resolve(done.original_key, None, None, principal=admin).content_type == "image/jpeg"
    stored = runtime.storage.get(done.original_key)
    assert done.byte_size == len(stored) and b"GPS" not in stored
    assert not runtime.storage.exists(raw_key), "the raw upload is deleted once replaced"
    report = verify_service.verify(runtime.database, runtime.storage, grace=timedelta(0))
    assert report.clean, (report.stray, report.missing)
