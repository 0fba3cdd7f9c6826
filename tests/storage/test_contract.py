"""One contract, both backends: local disk and S3 (moto's HTTP server).

Every test in the first part runs against each backend through the `storage`
fixture, with no branch on the backend; what only one backend has (local: symlink
refusal, temp files, no URLs of its own; S3: presigned and public URLs, multipart,
an unreachable endpoint) is tested separately at the end.
"""

from __future__ import annotations

import io
import os
import time
import urllib.request
from collections.abc import Callable
from datetime import timezone
from pathlib import Path

import pytest

from mediahub.config import Settings
from mediahub.errors import InvalidInput, NotFound, StorageUnavailable
from mediahub.storage.base import KeyExists, Storage
from mediahub.storage.factory import build_storage
from mediahub.storage.fallback import FallbackStorage
from mediahub.storage.local import TEMP_PREFIX, LocalStorage
from tests.support.s3_server import MB, anonymous_get, free_port, make_s3_storage

DATA = b"0123456789abcdef"
KEY = "listings/photos/42/2024-05/photo-20240501120000-abc123.jpg"


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3), "fallback"])
def storage(request: pytest.FixtureRequest) -> Storage:
    return request.getfixturevalue(f"{request.param}_storage")


@pytest.fixture
def fallback_storage(tmp_path: Path) -> Storage:
    """The store processes read through during a storage migration, over a source that holds nothing yet:
    it keeps the whole contract by itself."""
    return FallbackStorage(LocalStorage(tmp_path / "media"), [LocalStorage(tmp_path / "source")])


def _put_sources(tmp_path: Path) -> dict[str, Callable[[], object]]:
    path = tmp_path / "source.bin"
    path.write_bytes(DATA)
    return {"bytes": lambda: DATA, "stream": lambda: io.BytesIO(DATA), "path": lambda: path}


# Writing and reading


@pytest.mark.parametrize("source_kind", ["bytes", "stream", "path"])
def test_put_then_get_round_trips(storage: Storage, tmp_path: Path, source_kind: str) -> None:
    info = storage.put(KEY, _put_sources(tmp_path)[source_kind](), "image/jpeg")

    assert storage.get(KEY) == DATA
    assert (info.key, info.size, info.content_type) == (KEY, len(DATA), "image/jpeg")


def test_empty_object_round_trips(storage: Storage) -> None:
    storage.put("a/empty.jpg", b"", "image/jpeg")

    assert storage.get("a/empty.jpg") == b""
    assert storage.stat("a/empty.jpg").size == 0


def test_stat_reports_size_type_mtime_and_etag(storage: Storage) -> None:
    storage.put(KEY, DATA, "image/jpeg")

    info = storage.stat(KEY)

    assert info.size == len(DATA)
    assert info.content_type == "image/jpeg"
    # In datetime's own UTC zone: an HTTP date (Last-Modified) is formatted from nothing else.
    assert info.last_modified is not None and info.last_modified.tzinfo is timezone.utc
    assert info.etag
    assert all(listed.last_modified.tzinfo is timezone.utc for listed in storage.list())


def test_missing_object_is_not_found(storage: Storage) -> None:
    with pytest.raises(NotFound):
        storage.stat("a/missing.jpg")
    with pytest.raises(NotFound):
        storage.get("a/missing.jpg")
    assert not storage.exists("a/missing.jpg")


def test_exists_after_put(storage: Storage) -> None:
    storage.put(KEY, DATA, "image/jpeg")

    assert storage.exists(KEY)


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        (0, None, DATA),
        (2, 5, DATA[2:6]),
        (len(DATA) - 1, None, DATA[-1:]),
        (len(DATA) - 1, len(DATA) - 1, DATA[-1:]),
        (10, 10_000, DATA[10:]),  # an end past the object is clamped
    ],
)
def test_open_range_yields_inclusive_bytes(storage: Storage, start: int, end: int | None, expected: bytes) -> None:
    storage.put(KEY, DATA, "image/jpeg")

    assert b"".join(storage.open_range(KEY, start, end)) == expected


@pytest.mark.parametrize(("start", "end"), [(len(DATA), None), (len(DATA) + 5, len(DATA) + 9)])
def test_open_range_starting_past_the_end_is_unsatisfiable(storage: Storage, start: int, end: int | None) -> None:
    storage.put(KEY, DATA, "image/jpeg")

    with pytest.raises(InvalidInput) as caught:
        storage.open_range(KEY, start, end)  # raised at the call, before iterating
    assert caught.value.code == "range_not_satisfiable"


@pytest.mark.parametrize(("start", "end"), [(-1, None), (5, 2)])
def test_open_range_refuses_malformed_ranges(storage: Storage, start: int, end: int | None) -> None:
    storage.put(KEY, DATA, "image/jpeg")

    with pytest.raises(InvalidInput) as caught:
        storage.open_range(KEY, start, end)
    assert caught.value.code == "invalid_range"


def test_put_never_replaces_an_object(storage: Storage) -> None:
    storage.put(KEY, DATA, "image/jpeg")

    with pytest.raises(KeyExists) as caught:
        storage.put(KEY, b"other", "image/png")

    assert caught.value.key == KEY
    assert storage.get(KEY) == DATA
    assert storage.stat(KEY).size == len(DATA)


def test_put_never_replaces_a_large_object(storage: Storage, tmp_path: Path) -> None:
    """Above the multipart threshold on S3, where the check happens when the upload completes."""
    first, second = tmp_path / "first.bin", tmp_path / "second.bin"
    first.write_bytes(os.urandom(6 * MB))
    second.write_bytes(os.urandom(6 * MB))
    storage.put("a/large.mp4", first, "video/mp4")

    with pytest.raises(KeyExists):
        storage.put("a/large.mp4", second, "video/mp4")

    assert storage.get("a/large.mp4") == first.read_bytes()


def test_large_object_round_trips(storage: Storage, tmp_path: Path) -> None:
    """12 MiB crosses the 5 MiB multipart threshold on S3 and many write chunks locally."""
    source = tmp_path / "large.bin"
    source.write_bytes(os.urandom(12 * MB))

    info = storage.put("a/large.mp4", source, "video/mp4")

    assert info.size == 12 * MB
    assert storage.get("a/large.mp4") == source.read_bytes()


# Deleting, listing, usage


def test_delete_many_removes_keys_and_ignores_missing_ones(storage: Storage) -> None:
    storage.put("a/one.jpg", DATA, "image/jpeg")
    storage.put("a/two.jpg", DATA, "image/jpeg")
    storage.put("b/keep.jpg", DATA, "image/jpeg")

    failed = storage.delete_many(["a/one.jpg", "a/two.jpg", "a/never-existed.jpg"])

    assert failed == []
    assert [info.key for info in storage.list()] == ["b/keep.jpg"]


def test_delete_of_a_missing_key_succeeds(storage: Storage) -> None:
    storage.delete("a/never-existed.jpg")


def test_list_is_sorted_and_limited_to_the_prefix(storage: Storage) -> None:
    for key in ["users/b/2.jpg", "users/a-x/1.jpg", "users/a/1.jpg", "users2/x.jpg", "listings/1.jpg"]:
        storage.put(key, DATA, "image/jpeg")

    assert [info.key for info in storage.list("users/")] == ["users/a-x/1.jpg", "users/a/1.jpg", "users/b/2.jpg"]
    assert [info.key for info in storage.list("users/a")] == ["users/a-x/1.jpg", "users/a/1.jpg"]
    assert [info.key for info in storage.list("nothing/")] == []
    assert all(info.size == len(DATA) for info in storage.list())


# Names with `-` and `.`, which sort below `/`: listing folder by folder, each folder's names sorted, would
# give `a/b/c.jpg` (folder `a/b`) before `a/b-c/d.jpg`; byte order of the whole keys puts it last of the four.
ORDERED_KEYS = ["A.jpg", "Z/x.jpg", "a-b.jpg", "a.b.jpg", "a.b/c.jpg", "a/b-c/d.jpg", "a/b.c/d.jpg", "a/b.jpg",
                "a/b/c.jpg", "a/b/c/d.jpg", "a/b0.jpg", "a0.jpg", "a_b.jpg", "ab.jpg"]


def test_list_is_in_byte_order_of_the_whole_keys(storage: Storage) -> None:
    assert ORDERED_KEYS == sorted(ORDERED_KEYS, key=str.encode)
    for key in reversed(ORDERED_KEYS):
        storage.put(key, DATA, "image/jpeg")

    assert [info.key for info in storage.list()] == ORDERED_KEYS
    assert [info.key for info in storage.list("a/b")] == [k for k in ORDERED_KEYS if k.startswith("a/b")]


@pytest.mark.parametrize("after", ["A", "a", "a-b.jpg", "a.b", "a/b", "a/b-c/d.jpg", "a/b.jpg", "a/b/c.jpg",
                                   "a/b/c/d.jpg", "a/zzz", "a0", "zzz"])
def test_list_resumes_after_a_key_in_the_same_order(storage: Storage, after: str) -> None:
    for key in ORDERED_KEYS:
        storage.put(key, DATA, "image/jpeg")

    assert [info.key for info in storage.list(after=after)] == [k for k in ORDERED_KEYS if k > after]
    assert [info.key for info in storage.list("a/", after=after)] == [k for k in ORDERED_KEYS
                                                                      if k.startswith("a/") and k > after]


def test_usage_counts_objects_and_bytes(storage: Storage) -> None:
    storage.put("users/1.jpg", DATA, "image/jpeg")
    storage.put("users/2.jpg", DATA * 2, "image/jpeg")
    storage.put("listings/1.jpg", b"x", "image/jpeg")

    assert (storage.usage("users/").objects, storage.usage("users/").bytes) == (2, 3 * len(DATA))
    assert (storage.usage().objects, storage.usage().bytes) == (3, 3 * len(DATA) + 1)


def test_check_passes_on_a_working_backend(storage: Storage) -> None:
    storage.check()


# Readability without a signature


def test_set_public_accepts_present_and_missing_keys(storage: Storage) -> None:
    storage.put(KEY, DATA, "image/jpeg")

    storage.set_public([KEY, "a/missing.jpg"], True)
    storage.set_public([KEY, "a/missing.jpg"], False)

    assert storage.get(KEY) == DATA


# Key safety

INVALID_KEYS = {
    "dotdot": "../x",
    "absolute": "/abs",
    "inner-dotdot": "a/../b",
    "double-slash": "a//b",
    "encoded-dotdot": "%2e%2e/x",
    "nul": "a/b\x00.jpg",
    "too-long": "k" * 600,
}

OPERATIONS: dict[str, Callable[[Storage, str], object]] = {
    "put": lambda s, k: s.put(k, DATA, "image/jpeg"),
    "get": lambda s, k: s.get(k),
    "open_range": lambda s, k: s.open_range(k),
    "stat": lambda s, k: s.stat(k),
    "exists": lambda s, k: s.exists(k),
    "delete_many": lambda s, k: s.delete_many(["a/fine.jpg", k]),
    "delete": lambda s, k: s.delete(k),
    "set_public": lambda s, k: s.set_public(["a/fine.jpg", k], True),
    "list": lambda s, k: s.list(k),
    "list after": lambda s, k: s.list(after=k),
    "usage": lambda s, k: s.usage(k),
}


@pytest.mark.parametrize("operation", OPERATIONS)
@pytest.mark.parametrize("key", INVALID_KEYS.values(), ids=INVALID_KEYS.keys())
def test_invalid_keys_are_refused_by_every_method(storage: Storage, operation: str, key: str) -> None:
    storage.put("a/fine.jpg", DATA, "image/jpeg")

    with pytest.raises(InvalidInput) as caught:
        OPERATIONS[operation](storage, key)
    assert caught.value.code == "invalid_key"
    assert storage.exists("a/fine.jpg")  # a batch with one bad key deletes nothing


# Local only


def test_local_refuses_a_symlinked_folder_leading_outside(local_storage: LocalStorage, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.jpg").write_bytes(b"secret")
    local_storage.root.mkdir(parents=True)
    (local_storage.root / "evil").symlink_to(outside, target_is_directory=True)

    with pytest.raises(InvalidInput):
        local_storage.get("evil/secret.jpg")
    with pytest.raises(InvalidInput):
        local_storage.put("evil/new.jpg", DATA, "image/jpeg")
    assert not (outside / "new.jpg").exists()
    assert list(local_storage.list()) == []


def test_local_refuses_a_symlinked_file(local_storage: LocalStorage, tmp_path: Path) -> None:
    outside = tmp_path / "secret.jpg"
    outside.write_bytes(b"secret")
    local_storage.root.mkdir(parents=True)
    (local_storage.root / "link.jpg").symlink_to(outside)

    with pytest.raises(InvalidInput):
        local_storage.get("link.jpg")
    assert list(local_storage.list()) == []


class _SourceFailed(Exception):
    pass


class _FailingStream(io.RawIOBase):
    """Yields one chunk, then fails as a dropped upload would."""

    def __init__(self) -> None:
        self.calls = 0

    def read(self, size: int = -1) -> bytes:
        self.calls += 1
        if self.calls > 1:
            raise _SourceFailed("client went away")
        return b"x" * 1024


def test_local_failed_put_leaves_no_temp_file_and_no_object(local_storage: LocalStorage) -> None:
    with pytest.raises(_SourceFailed):
        local_storage.put("a/b/c.jpg", _FailingStream(), "image/jpeg")

    assert not local_storage.exists("a/b/c.jpg")
    assert [p for p in local_storage.root.rglob("*") if p.is_file()] == []


def test_local_list_skips_temp_files(local_storage: LocalStorage) -> None:
    local_storage.put("a/one.jpg", DATA, "image/jpeg")
    (local_storage.root / "a" / f"{TEMP_PREFIX}leftover").write_bytes(b"partial")

    assert [info.key for info in local_storage.list()] == ["a/one.jpg"]


def test_local_list_skips_what_no_key_can_name(local_storage: LocalStorage) -> None:
    local_storage.put("a/one.jpg", DATA, "image/jpeg")
    (local_storage.root / "a" / "two words.jpg").write_bytes(b"not an object")
    (local_storage.root / ".hidden").mkdir()
    (local_storage.root / ".hidden" / "x.jpg").write_bytes(b"not an object")

    assert [info.key for info in local_storage.list()] == ["a/one.jpg"]


def test_local_delete_prunes_emptied_folders_but_keeps_the_root(local_storage: LocalStorage) -> None:
    local_storage.put("a/b/c.jpg", DATA, "image/jpeg")
    local_storage.put("a/keep.jpg", DATA, "image/jpeg")

    assert local_storage.delete_many(["a/b/c.jpg"]) == []

    assert not (local_storage.root / "a" / "b").exists()
    assert (local_storage.root / "a").is_dir()
    local_storage.delete("a/keep.jpg")
    assert local_storage.root.is_dir() and not any(local_storage.root.iterdir())


def test_local_serves_no_urls_of_its_own(local_storage: LocalStorage) -> None:
    """Its objects reach clients only through whoever reads them from the store."""
    local_storage.put(KEY, DATA, "image/jpeg")
    local_storage.set_public([KEY], True)

    assert not local_storage.can_presign
    assert local_storage.public_url(KEY) is None
    with pytest.raises(InvalidInput) as caught:
        local_storage.presign(KEY, 60)
    assert caught.value.code == "unsupported_operation"


def test_local_check_creates_the_root(local_storage: LocalStorage) -> None:
    local_storage.check()

    assert local_storage.root.is_dir()


def test_local_check_fails_when_the_root_cannot_be_created(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")
    storage = LocalStorage(blocker / "media")

    with pytest.raises(StorageUnavailable):
        storage.check()


# S3 only


@pytest.mark.s3
@pytest.mark.parametrize(
    "operation",
    [
        lambda s: s.put(KEY, DATA, "image/jpeg"),
        lambda s: s.get(KEY),
        lambda s: s.check(),
        lambda s: s.delete_many([KEY]),
        lambda s: list(s.list()),
    ],
    ids=["put", "get", "check", "delete_many", "list"],
)
def test_s3_unreachable_endpoint_is_storage_unavailable_quickly(operation: Callable[[Storage], object]) -> None:
    storage = make_s3_storage(f"http://127.0.0.1:{free_port()}", timeout=1.0)
    began = time.monotonic()

    with pytest.raises(StorageUnavailable) as caught:
        operation(storage)

    assert caught.value.code == "storage_unavailable"
    assert time.monotonic() - began < 10


@pytest.mark.s3
def test_s3_large_objects_go_up_in_parts(s3_storage: Storage, tmp_path: Path) -> None:
    source = tmp_path / "large.bin"
    source.write_bytes(os.urandom(12 * MB))

    info = s3_storage.put("a/large.mp4", source, "video/mp4")

    assert "-" in (info.etag or "")  # multipart ETags end in -<part count>


@pytest.mark.s3
def test_s3_presigned_get_grants_the_object(s3_storage: Storage) -> None:
    s3_storage.put(KEY, DATA, "image/jpeg")

    assert s3_storage.can_presign
    with urllib.request.urlopen(s3_storage.presign(KEY, 60), timeout=5) as response:
        assert response.read() == DATA


@pytest.mark.s3
def test_s3_presigned_put_uploads_with_the_signed_type(s3_storage: Storage) -> None:
    url = s3_storage.presign(KEY, 60, method="PUT", content_type="image/png")
    request = urllib.request.Request(url, data=DATA, method="PUT", headers={"Content-Type": "image/png"})
    urllib.request.urlopen(request, timeout=5).close()

    assert s3_storage.get(KEY) == DATA
    assert s3_storage.stat(KEY).content_type == "image/png"


@pytest.mark.s3
@pytest.mark.parametrize("expires_in", [0, -5, 8 * 24 * 3600])
def test_s3_presign_refuses_out_of_range_expiry(s3_storage: Storage, expires_in: int) -> None:
    with pytest.raises(InvalidInput) as caught:
        s3_storage.presign(KEY, expires_in)
    assert caught.value.code == "invalid_expiry"


@pytest.mark.s3
@pytest.mark.parametrize("key", INVALID_KEYS.values(), ids=INVALID_KEYS.keys())
def test_s3_presign_refuses_invalid_keys(s3_storage: Storage, key: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        s3_storage.presign(key, 60)
    assert caught.value.code == "invalid_key"


@pytest.mark.s3
def test_s3_public_urls_serve_exactly_the_public_objects(s3_server: str) -> None:
    """With the bucket's own public URLs, an anonymous GET reads an object only between set_public calls."""
    storage = make_s3_storage(s3_server, public_bucket=True)
    storage.check()
    storage.put(KEY, DATA, "image/jpeg")
    url = storage.public_url(KEY)

    assert anonymous_get(url)[0] == 403, "a new object is private"
    storage.set_public([KEY], True)
    status, _, body = anonymous_get(url)
    assert (status, body) == (200, DATA)
    storage.set_public([KEY], False)
    assert anonymous_get(url)[0] == 403


@pytest.mark.s3
def test_s3_missing_bucket_without_create_is_unavailable(s3_server: str) -> None:
    storage = make_s3_storage(s3_server, create_bucket=False)

    with pytest.raises(StorageUnavailable):
        storage.check()


@pytest.mark.s3
def test_s3_public_url_uses_the_public_base(s3_server: str) -> None:
    with_base = make_s3_storage(s3_server, public_base_url="https://cdn.example.com/")

    assert with_base.public_url(KEY) == f"https://cdn.example.com/{KEY}"
    assert make_s3_storage(s3_server).public_url(KEY) is None


@pytest.mark.s3
def test_s3_objects_carry_the_public_cache_control_and_signed_urls_a_private_one(s3_server: str) -> None:
    storage = make_s3_storage(s3_server, public_bucket=True, cache_control="public, max-age=60")
    storage.check()
    storage.put(KEY, DATA, "image/jpeg")
    storage.set_public([KEY], True)

    assert anonymous_get(storage.public_url(KEY))[1]["cache-control"] == "public, max-age=60"
    assert anonymous_get(storage.presign(KEY, 60))[1]["cache-control"] == "private, no-store"


@pytest.mark.s3
def test_s3_without_a_public_base_never_makes_objects_public(s3_server: str) -> None:
    """Approved items get presigned URLs there, so set_public leaves the bucket private."""
    storage = make_s3_storage(s3_server)
    storage.check()
    storage.put(KEY, DATA, "image/jpeg")

    storage.set_public([KEY], True)

    assert anonymous_get(f"{s3_server}/{storage.bucket}/{KEY}")[0] == 403


# Factory


def test_factory_builds_local_storage_from_settings(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, storage_type="local", media_root=tmp_path / "media")

    storage = build_storage(settings)

    assert isinstance(storage, LocalStorage)
    assert (storage.kind, storage.bucket, storage.root) == ("local", None, (tmp_path / "media").resolve())


@pytest.mark.s3
def test_factory_builds_working_s3_storage_with_the_bucket_url_whatever_the_cdn(s3_server: str) -> None:
    """CDN_BASE_URL fronts the API (media/urls.py): bucket objects keep the bucket's public address."""
    settings = Settings(
        _env_file=None,
        storage_type="s3",
        s3_endpoint_url=s3_server,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        s3_bucket_name="factory-bucket",
        s3_public_base_url="https://bucket.example.com",
        cdn_base_url="https://cdn.example.com",
    )

    storage = build_storage(settings)
    storage.check()
    storage.put(KEY, DATA, "image/jpeg")

    assert (storage.kind, storage.bucket) == ("s3", "factory-bucket")
    assert storage.get(KEY) == DATA
    assert storage.public_url(KEY) == f"https://bucket.example.com/{KEY}"
