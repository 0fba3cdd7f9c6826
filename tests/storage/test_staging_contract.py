"""One contract for staged uploads, both backends: local disk and S3 (moto's HTTP server).

Every test in the first part runs against each backend through the `staging` fixture, with
no branch on the backend; what only one backend has (local: hard links, bytes of a dead
request past the staged size; S3: parts, tails, multipart uploads) is tested at the end.
"""

from __future__ import annotations

import gc
import hashlib
import os
import random
import tracemalloc
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from botocore.exceptions import EndpointConnectionError

from mediahub.config import Settings
from mediahub.errors import InvalidInput, NotFound, StorageUnavailable
from mediahub.storage.base import Storage
from mediahub.storage.factory import build_staging
from mediahub.storage.local_staging import LocalStaging
from mediahub.storage.s3 import S3Storage
from mediahub.storage.s3_staging import S3Staging
from mediahub.storage.staging import Staged, Staging
from tests.support.faults import Passthrough
from tests.support.s3_server import MB

P = 5 * MB  # the S3 backend's part size: S3's minimum
KEY = "incoming/tus/0123456789abcdef"
ODD_BLOCKS = [1, 7, 65_537, MB + 3, 333_333, 2 * MB - 1]
LATER = datetime.now(timezone.utc) + timedelta(days=1)


@pytest.fixture
def s3_staging(s3_storage: S3Storage, tmp_path: Path) -> S3Staging:
    return S3Staging(s3_storage, P, tmp_path / "tmp")


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def staging(request: pytest.FixtureRequest, tmp_path: Path) -> Staging:
    if request.param == "local":
        return LocalStaging(tmp_path / "staging")
    return request.getfixturevalue("s3_staging")


@pytest.fixture
def out_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "out"
    folder.mkdir()
    return folder


def data_of(size: int, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(size)


def blocks(data: bytes, sizes: list[int] = ODD_BLOCKS) -> Iterator[bytes]:
    offset, turn = 0, 0
    while offset < len(data):
        size = sizes[turn % len(sizes)]
        yield data[offset : offset + size]
        offset, turn = offset + size, turn + 1


def append(staging: Staging, staged: Staged, data: bytes, sizes: list[int] = ODD_BLOCKS, key: str = KEY) -> Staged:
    """Write `data` after `staged` in one writer and persist; the checkpoints never shrink within it."""
    with staging.writer(key, staged) as writer:
        last = staged.size
        for block in blocks(data, sizes):
            checkpoint = writer.write(block)
            if checkpoint is not None:
                assert last <= checkpoint.size <= staged.size + len(data)
                last = checkpoint.size
        persisted = writer.persist()
    assert persisted.size == staged.size + len(data)
    return persisted


def staged_bytes(staging: Staging, staged: Staged, directory: Path) -> bytes:
    path = staging.materialise(KEY, staged, directory)
    try:
        return path.read_bytes()
    finally:
        path.unlink()


# Appending and reading back


@pytest.mark.parametrize("size", [0, 1, P - 1, P, P + 1, 3 * P + 7])
def test_odd_sized_writes_read_back_exactly(staging: Staging, out_dir: Path, size: int) -> None:
    data = data_of(size)

    staged = append(staging, staging.begin(KEY), data)

    assert staged_bytes(staging, staged, out_dir) == data


@pytest.mark.parametrize("split", [1, P - 1, P, P + 1])
def test_a_second_writer_continues_where_the_first_persisted(staging: Staging, out_dir: Path, split: int) -> None:
    data = data_of(2 * P + 5)

    first = append(staging, staging.begin(KEY), data[:split])
    second = append(staging, first, data[split:])

    assert staged_bytes(staging, second, out_dir) == data


def test_persist_with_nothing_new_keeps_the_state(staging: Staging) -> None:
    staged = append(staging, staging.begin(KEY), data_of(100))

    with staging.writer(KEY, staged) as writer:
        assert writer.persist() == staged


def test_writing_goes_on_after_persist(staging: Staging, out_dir: Path) -> None:
    data = data_of(P + 10)
    with staging.writer(KEY, staging.begin(KEY)) as writer:
        writer.write(data[:10])
        middle = writer.persist()
        writer.write(data[10:])
        end = writer.persist()

    assert (middle.size, end.size) == (10, P + 10)
    assert staged_bytes(staging, middle, out_dir) == data[:10]
    assert staged_bytes(staging, end, out_dir) == data


# Crashes and checksum mismatches


def test_resume_from_a_checkpoint_after_the_writer_died(staging: Staging, out_dir: Path) -> None:
    """Bytes written after the checkpoint the caller recorded (some stored, some pending) are overwritten."""
    data = data_of(2 * P + 100)
    writer = staging.writer(KEY, staging.begin(KEY))
    checkpoints = [c for c in map(writer.write, blocks(data, [64 * 1024])) if c is not None]
    writer.write(data_of(3 * MB, seed=2))  # a dead request's bytes past the checkpoint
    writer.close()  # no persist: as after kill -9
    assert checkpoints, "a writer of two parts' worth must checkpoint"
    recorded = checkpoints[-1]

    resumed = append(staging, recorded, data[recorded.size :])

    assert staged_bytes(staging, resumed, out_dir) == data


def test_abandon_drops_what_came_after_the_last_persisted_state(staging: Staging, out_dir: Path) -> None:
    data = data_of(P // 2 + 3)
    with staging.writer(KEY, staging.begin(KEY)) as writer:
        writer.write(data)
        kept = writer.persist()
        writer.write(data_of(2 * MB, seed=3))  # fails its checksum
        writer.abandon()
        assert writer.persist() == kept
        writer.write(b"after")
        continued = writer.persist()

    assert staged_bytes(staging, kept, out_dir) == data
    assert staged_bytes(staging, continued, out_dir) == data + b"after"


def test_a_new_writer_from_an_earlier_state_overwrites_what_came_after(staging: Staging, out_dir: Path) -> None:
    """The caller kept its recorded state (the later one was never recorded): that is the upload."""
    data = data_of(P + 20)
    earlier = append(staging, staging.begin(KEY), data[:20])
    append(staging, earlier, data_of(P, seed=4))

    again = append(staging, earlier, data[20:])

    assert staged_bytes(staging, again, out_dir) == data


# Materialising


def test_materialise_again_after_a_failed_one_gives_the_same_bytes(staging: Staging, tmp_path: Path,
                                                                    out_dir: Path) -> None:
    data = data_of(2 * P + 9)
    staged = append(staging, staging.begin(KEY), data)

    with pytest.raises(StorageUnavailable):
        staging.materialise(KEY, staged, tmp_path / "missing")
    first = staging.materialise(KEY, staged, out_dir)
    second = staging.materialise(KEY, staged, out_dir)

    assert first != second and first.parent == second.parent == out_dir
    assert first.read_bytes() == second.read_bytes() == data


def test_materialised_file_is_the_callers(staging: Staging, out_dir: Path) -> None:
    """Replacing or removing the materialised file leaves the staged upload as it was."""
    data = data_of(P + 1)
    staged = append(staging, staging.begin(KEY), data)
    path = staging.materialise(KEY, staged, out_dir)
    replacement = out_dir / "remuxed"
    replacement.write_bytes(b"remuxed")

    replacement.replace(path)

    assert staged_bytes(staging, staged, out_dir) == data


@pytest.mark.parametrize("size", [1, P, P + 1])
def test_lost_bytes_are_not_found(staging: Staging, out_dir: Path, size: int) -> None:
    staged = append(staging, staging.begin(KEY), data_of(size))
    staging.discard(KEY)

    with pytest.raises(NotFound) as writing:
        staging.writer(KEY, staged)
    with pytest.raises(NotFound) as reading:
        staging.materialise(KEY, staged, out_dir)

    assert writing.value.code == reading.value.code == "staged_bytes_missing"
    assert list(out_dir.iterdir()) == []


def test_keys_are_checked(staging: Staging) -> None:
    for key in ["../escape", "/abs", "incoming/../../x"]:
        with pytest.raises(InvalidInput):
            staging.begin(key)
        with pytest.raises(InvalidInput):
            staging.discard(key)


# Discarding and listing


def test_discard_removes_everything(staging: Staging) -> None:
    """Including what a writer that died before its state was recorded stored."""
    staged = append(staging, staging.begin(KEY), data_of(P + 7))
    dead = staging.writer(KEY, staging.begin(KEY))  # as if the row had never recorded the first
    dead.write(data_of(P + 1, seed=5))
    dead.close()

    staging.discard(KEY)
    staging.discard(KEY)  # nothing stored is not an error

    assert list(staging.stored_keys("incoming/", LATER)) == []
    with pytest.raises(NotFound):
        staging.writer(KEY, staged)


def test_stored_keys_lists_what_was_not_discarded(staging: Staging) -> None:
    keys = ["incoming/tus/a", "incoming/tus/a-b", "incoming/tus/b", "incoming/s3_post/c"]
    for key in keys:
        with staging.writer(key, staging.begin(key)) as writer:
            writer.write(b"x" * (P if key.endswith("b") else 1))
            writer.persist()
    staging.discard("incoming/tus/b")

    assert sorted(staging.stored_keys("incoming/", LATER)) == ["incoming/s3_post/c", "incoming/tus/a",
                                                               "incoming/tus/a-b"]
    assert sorted(staging.stored_keys("incoming/tus/", LATER)) == ["incoming/tus/a", "incoming/tus/a-b"]
    assert list(staging.stored_keys("incoming/", datetime.now(timezone.utc) - timedelta(hours=1))) == []


def test_begin_stores_nothing(staging: Staging) -> None:
    staging.begin(KEY)

    assert list(staging.stored_keys("incoming/", LATER)) == []


# Memory


def test_a_large_upload_keeps_memory_at_a_block(staging: Staging, out_dir: Path) -> None:
    block_size, total = MB, 64 * MB
    digest = hashlib.sha256()
    gc.collect()
    tracemalloc.start()
    try:
        with staging.writer(KEY, staging.begin(KEY)) as writer:
            for _ in range(total // block_size):
                block = os.urandom(block_size)
                digest.update(block)
                writer.write(block)
                del block
            staged = writer.persist()
        path = staging.materialise(KEY, staged, out_dir)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert staged.size == path.stat().st_size == total
    with path.open("rb") as materialised:
        assert hashlib.file_digest(materialised, "sha256").digest() == digest.digest()
    assert peak < 2 * block_size, f"peak {peak / MB:.2f} MiB"


# Local disk only


def test_local_materialise_links_the_staged_file(tmp_path: Path, out_dir: Path) -> None:
    staging = LocalStaging(tmp_path / "staging")
    staged = append(staging, staging.begin(KEY), data_of(1000))

    path = staging.materialise(KEY, staged, out_dir)

    assert path.stat().st_ino == (staging.root / KEY).stat().st_ino


def test_local_materialise_copies_only_the_staged_bytes(tmp_path: Path, out_dir: Path) -> None:
    staging = LocalStaging(tmp_path / "staging")
    data = data_of(3 * MB)
    staged = append(staging, staging.begin(KEY), data)
    writer = staging.writer(KEY, staged)
    writer.write(data_of(2 * MB, seed=6))  # stored (past the buffer), never persisted
    writer.close()
    assert (staging.root / KEY).stat().st_size > staged.size

    path = staging.materialise(KEY, staged, out_dir)

    assert path.stat().st_ino != (staging.root / KEY).stat().st_ino
    assert path.read_bytes() == data


def test_local_checkpoints_come_every_few_mebibytes(tmp_path: Path) -> None:
    staging = LocalStaging(tmp_path / "staging")
    with staging.writer(KEY, staging.begin(KEY)) as writer:
        checkpoints = [c.size for c in map(writer.write, blocks(data_of(20 * MB), [MB])) if c is not None]

    assert checkpoints == [8 * MB, 16 * MB]


# S3 only


def _tails(storage: S3Storage) -> list[str]:
    return [info.key for info in storage.list(f"{KEY}.tail-")]


def _multipart_uploads(storage: S3Storage) -> list[str]:
    return [u["UploadId"] for u in storage.client.list_multipart_uploads(Bucket=storage.bucket).get("Uploads", [])]


@pytest.mark.s3
def test_s3_parts_are_written_as_they_arrive(s3_staging: S3Staging) -> None:
    data = data_of(2 * P + 3)
    with s3_staging.writer(KEY, s3_staging.begin(KEY)) as writer:
        checkpoints = [c for c in map(writer.write, blocks(data, [MB])) if c is not None]
        staged = writer.persist()

    assert [c.size for c in checkpoints] == [P, 2 * P]
    assert [c.state["tails"] for c in checkpoints] == [[], []]
    assert staged.state["upload_id"] == checkpoints[0].state["upload_id"]
    assert len(staged.state["parts"]) == 2 and [size for _, size in staged.state["tails"]] == [3]
    assert _multipart_uploads(s3_staging.storage) == [staged.state["upload_id"]]


@pytest.mark.s3
def test_s3_superseded_tails_go_at_the_next_writers_start(s3_staging: S3Staging, out_dir: Path) -> None:
    pieces = [data_of(10, seed=turn) for turn in range(3)]
    with s3_staging.writer(KEY, s3_staging.begin(KEY)) as writer:
        for piece in pieces:
            writer.write(piece)
            staged = writer.persist()
    assert len(_tails(s3_staging.storage)) > len(staged.state["tails"])  # the caller may not have recorded it yet

    with s3_staging.writer(KEY, staged):
        assert _tails(s3_staging.storage) == sorted(f"{KEY}.tail-{token}" for token, _ in staged.state["tails"])
    assert staged_bytes(s3_staging, staged, out_dir) == b"".join(pieces)


@pytest.mark.s3
def test_s3_small_writes_cost_the_store_what_they_carry(s3_staging: S3Staging, out_dir: Path) -> None:
    """Each persist stores its new bytes as one more piece of the tail, not the whole tail again; the last
    pieces merge while the one before is at most twice the newest, so the tail stays a few pieces."""
    data = data_of(P - 1)
    staged = append(s3_staging, s3_staging.begin(KEY), data[: P // 2])
    written: list[int] = []

    def count(params: dict, **_: object) -> None:
        written.append(params["ContentLength"])

    s3_staging.storage.client.meta.events.register("before-parameter-build.s3.PutObject", count)
    try:
        for offset in range(P // 2, P // 2 + 300):
            staged = append(s3_staging, staged, data[offset:offset + 1])
    finally:
        s3_staging.storage.client.meta.events.unregister("before-parameter-build.s3.PutObject", count)
    assert sum(written) < 300 * 2 * 10 and len(staged.state["tails"]) <= 10, (sum(written), staged.state["tails"])
    staged = append(s3_staging, staged, data[P // 2 + 300:])
    assert staged_bytes(s3_staging, staged, out_dir) == data


@pytest.mark.s3
def test_s3_discard_aborts_every_multipart_upload_and_deletes_every_object(s3_staging: S3Staging,
                                                                           out_dir: Path) -> None:
    storage, neighbour = s3_staging.storage, f"{KEY}0"  # KEY is a prefix of the neighbour's key
    staged = append(s3_staging, s3_staging.begin(KEY), data_of(P + 7))
    staged_bytes(s3_staging, staged, out_dir)  # completes its multipart upload: the object exists
    append(s3_staging, s3_staging.begin(KEY), data_of(P + 8))  # another multipart upload on the key
    append(s3_staging, s3_staging.begin(neighbour), data_of(P + 1), key=neighbour)
    assert len(_multipart_uploads(storage)) == 2

    s3_staging.discard(KEY)

    assert [info.key for info in storage.list(KEY)] == [info.key for info in storage.list(neighbour)] != []
    assert [u["Key"] for u in storage.client.list_multipart_uploads(Bucket=storage.bucket)["Uploads"]] == [
        neighbour]


@pytest.mark.s3
def test_s3_keeps_the_part_size_it_began_with(s3_storage: S3Storage, tmp_path: Path, out_dir: Path) -> None:
    data, smaller = data_of(2 * P + 1), S3Staging(s3_storage, P, tmp_path)
    first = append(smaller, smaller.begin(KEY), data[: P + 1])
    bigger = S3Staging(s3_storage, 2 * P, tmp_path)  # UPLOAD_PART_SIZE changed meanwhile

    staged = append(bigger, first, data[P + 1 :])

    assert staged.state["part_size"] == P and len(staged.state["parts"]) == 2
    assert staged_bytes(bigger, staged, out_dir) == data



def test_build_staging_follows_the_store(local_storage: Storage, tmp_path: Path) -> None:
    settings = Settings(_env_file=None, temp_dir=tmp_path / "tmp", upload_part_size=6 * MB)

    staging = build_staging(settings, local_storage)

    assert isinstance(staging, LocalStaging) and staging.root == tmp_path / "tmp" / "staging"


@pytest.mark.s3
def test_build_staging_on_s3_stages_in_the_bucket(s3_storage: S3Storage, tmp_path: Path) -> None:
    settings = Settings(_env_file=None, temp_dir=tmp_path / "tmp", upload_part_size=6 * MB)

    staging = build_staging(settings, s3_storage)

    assert isinstance(staging, S3Staging) and staging.storage is s3_storage
    assert staging.begin(KEY).state["part_size"] == 6 * MB


class FailingFirstPart(Passthrough):
    """A real store whose client's first UploadPart fails as a dropped connection does."""

    def __init__(self, inner: S3Storage) -> None:
        super().__init__(inner)
        self.client = FailingFirstPartClient(inner.client)


class FailingFirstPartClient(Passthrough):
    failed = False

    def upload_part(self, **kwargs: object) -> object:
        if not self.failed:
            self.failed = True
            raise EndpointConnectionError(endpoint_url="injected")
        return self.inner.upload_part(**kwargs)


@pytest.mark.s3
@pytest.mark.parametrize("then", ["write", "persist"])
def test_s3_a_part_whose_upload_failed_goes_first_next_time(s3_storage: S3Storage, tmp_path: Path, out_dir: Path,
                                                            then: str) -> None:
    staging = S3Staging(FailingFirstPart(s3_storage), P, tmp_path)  # type: ignore[arg-type]
    data = data_of(P + 10)
    with staging.writer(KEY, staging.begin(KEY)) as writer:
        with pytest.raises(StorageUnavailable):
            writer.write(data[:P])
        if then == "write":
            assert writer.write(data[P:]).size == P
            staged = writer.persist()
        else:
            staged = append(staging, writer.persist(), data[P:])

    assert staged.size == P + 10 and len(staged.state["parts"]) == 1
    assert staged_bytes(staging, staged, out_dir) == data
