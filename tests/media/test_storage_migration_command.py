"""A real `mediahub storage migrate` process, local disk -> S3 (moto's server behind a fault proxy): killed with
SIGKILL mid-copy and run again, and meeting PUTs that fail; on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import uuid
from collections import Counter
from pathlib import Path
from urllib.parse import urlparse

import pytest
from sqlalchemy import func, select

from mediahub.db.models import MediaItem, MigratedObject
from mediahub.db.session import Database
from mediahub.storage.local import LocalStorage
from mediahub.storage.s3 import S3Storage
from tests.media.conftest import make_runtime
from tests.media.helpers import upload
from tests.reliability.harness import ROOT, FaultProxy
from tests.support.corpus import CORPUS_DIR
from tests.support.s3_server import DUMMY_CREDENTIALS

pytestmark = pytest.mark.s3

PHOTOS = [CORPUS_DIR / "images/good" / name for name in ("jpeg_hopper.jpg", "webp_flower.webp", "jpeg_flower.jpg",
                                                          "png_hopper.png", "jpeg_cmyk.jpg")]
RUN_SECONDS = 300
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.fixture
def library(migrated_database_url, tmp_path):
    """Items on local disk, as a process on the old settings stored them: (database, local store)."""
    database = Database(migrated_database_url)
    local = LocalStorage(tmp_path / "media")
    runtime = make_runtime(database, local, tmp_path, dedup_policy="allow",
                           image_sizes="thumbnail:150x150:crop,small:400")
    for photo in PHOTOS:
        upload(runtime, photo)
    runtime.jobs.close()
    yield database, local
    database.dispose()


@pytest.fixture
def proxy(s3_server):
    proxy = FaultProxy(urlparse(s3_server).port, http=True)
    yield proxy
    proxy.close()


def command_env(database: Database, tmp_path: Path, endpoint: str, bucket: str) -> dict[str, str]:
    return {**os.environ, **DUMMY_CREDENTIALS, "PYTHONPATH": str(ROOT / "src"),
            "DATABASE_URL": database.url.render_as_string(hide_password=False), "MEDIA_ROOT": str(tmp_path / "media"),
            "STORAGE_TYPE": "s3", "S3_ENDPOINT_URL": endpoint, "S3_BUCKET_NAME": bucket, "AWS_REGION": "us-east-1"}


def migrate(env: dict[str, str], *args: str, to: str = "s3") -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "mediahub.cli", "storage", "migrate", "--to", to, *args],
                            env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def finished(process: subprocess.Popen[bytes]) -> tuple[int, dict | None, str]:
    out, err = process.communicate(timeout=RUN_SECONDS)
    return process.returncode, json.loads(out) if out.strip() else None, err.decode(errors="replace")


def bucket_keys(puts: list[str], bucket: str) -> list[str]:
    """The object keys of PUT paths (`/bucket/key`), without the bucket's own creation."""
    prefix = f"/{bucket}/"
    return [path[len(prefix):] for path in puts if path.startswith(prefix)]


def assert_moved(database: Database, bucket: str, endpoint: str, local: LocalStorage) -> None:
    store = S3Storage(bucket, endpoint, access_key=DUMMY_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                      secret_key=DUMMY_CREDENTIALS["AWS_SECRET_ACCESS_KEY"])
    with database.session() as session:
        items = list(session.scalars(select(MediaItem)))
    assert items and {(item.storage_type, item.bucket_name) for item in items} == {("s3", bucket)}
    for item in items:
        assert item.stored_sha256 == hashlib.sha256(store.get(item.original_key)).hexdigest()
        for variant in item.variants:
            assert variant.content_hash == hashlib.sha256(store.get(variant.storage_key)).hexdigest()
    assert list(local.list()) == [], "every source copy deleted"


def verify_passes(env: dict[str, str]) -> None:
    result = subprocess.run([sys.executable, "-m", "mediahub.cli", "verify", "--grace-minutes", "0", "--json"],
                            env=env, cwd=ROOT, capture_output=True, timeout=RUN_SECONDS)
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()


@pytest.mark.parametrize("migrated_database_url", BACKENDS, indirect=True)
def test_killed_mid_copy_then_run_again_copies_nothing_twice(library, proxy, s3_server, tmp_path):
    database, local = library
    bucket = f"mig-{uuid.uuid4().hex[:12]}"
    env = command_env(database, tmp_path, proxy.url, bucket)
    puts: list[str] = []
    running: list[subprocess.Popen[bytes]] = []
    killed = threading.Event()

    def on_put(path: str) -> None:
        puts.append(path)
        if len(bucket_keys(puts, bucket)) == 6 and not killed.is_set():
            killed.set()
            os.kill(running[0].pid, signal.SIGKILL)  # this PUT, and whatever else is in flight, is cut off

    proxy.on_put = on_put
    running.append(migrate(env, "--concurrency", "2", "--json"))
    returncode, _, _ = finished(running[0])
    assert killed.is_set() and returncode == -signal.SIGKILL
    with database.session() as session:
        kept = session.scalar(select(func.count()).select_from(MigratedObject)
                              .where(MigratedObject.state.in_(["verified", "switched"])))
    # A thread sends its next object once the last one is verified: all but the two in flight are.
    assert kept >= 4, "the first run verified copies before it was killed"

    returncode, report, err = finished(migrate(env, "--concurrency", "2", "--delete-source-after", "0", "--json"))
    assert returncode == 0, err
    assert report["finished"] and not report["missing"] and not report["failed"]
    assert report["already_there"] >= kept and report["copied"] + report["already_there"] == report["objects"]
    written_again = [key for key, count in Counter(bucket_keys(puts, bucket)).items() if count > 1]
    assert len(written_again) <= 2, f"only the copies in flight at the kill are written again: {written_again}"
    assert_moved(database, bucket, s3_server, local)
    verify_passes(env)


@pytest.mark.parametrize("migrated_database_url", BACKENDS, indirect=True)
def test_a_failing_put_is_reported_and_its_item_stays_until_a_rerun(library, proxy, s3_server, tmp_path):
    database, local = library
    bucket = f"mig-{uuid.uuid4().hex[:12]}"
    env = command_env(database, tmp_path, proxy.url, bucket)

    returncode, plan, err = finished(migrate(env, "--dry-run", "--json"))
    assert returncode == 0, err
    assert plan["sources"]["local"]["items"] == len(PHOTOS) and proxy.puts_seen == 0

    proxy.fail_puts_of(4)  # every attempt to store the fourth object fails, as a dropped connection does
    returncode, report, err = finished(migrate(env, "--delete-source-after", "0", "--json"))
    assert returncode == 1, err
    [failed] = report["failed"]
    assert failed["reason"].startswith("copy refused") and failed["store"] == "local"
    assert report["items_switched"] == len(PHOTOS) - 1 and not report["finished"]
    with database.session() as session:
        stuck = session.get(MediaItem, failed["media_id"])
        assert stuck.storage_type == "local" and all(local.exists(key) for key in stuck.keys())

    proxy.fail_puts_of(None)
    returncode, report, err = finished(migrate(env, "--delete-source-after", "0", "--json"))
    assert returncode == 0, err
    assert report["items_switched"] == 1 and report["finished"]
    assert_moved(database, bucket, s3_server, local)
    verify_passes(env)


def test_the_target_must_be_the_settings_store(library, tmp_path, s3_server):
    database, _ = library
    env = command_env(database, tmp_path, s3_server, "mig-any")
    returncode, _, err = finished(migrate(env, to="local"))
    assert returncode == 2 and "the settings describe s3 storage" in err
