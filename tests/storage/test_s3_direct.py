"""The S3 store's primitives for uploads clients send straight to the bucket, against moto's server."""

from __future__ import annotations

import base64
import json

import pytest
import requests

from mediahub.errors import InvalidInput, NotFound
from mediahub.storage.base import KeyExists
from mediahub.storage.s3 import S3Storage
from tests.support.s3_server import MB

pytestmark = pytest.mark.s3

KEY = "incoming/direct/abc"


def _put(url: str, data: bytes) -> str:
    with requests.Session() as http:
        http.trust_env = False
        response = http.put(url, data=data, timeout=30)
    assert response.status_code == 200, response.text
    return response.headers["ETag"]


def test_parts_put_at_signed_urls_are_listed_and_assembled(s3_storage: S3Storage) -> None:
    upload_id = s3_storage.create_multipart(KEY)
    first = _put(s3_storage.presign_part(KEY, upload_id, 1, 60), b"a" * (5 * MB))
    second = _put(s3_storage.presign_part(KEY, upload_id, 2, 60), b"b")
    assert [(p.number, p.etag, p.size) for p in s3_storage.list_parts(KEY, upload_id)] == [
        (1, first, 5 * MB), (2, second, 1)]
    s3_storage.complete_multipart(KEY, upload_id, [(1, first), (2, second)])
    assert s3_storage.stat(KEY).size == 5 * MB + 1
    with pytest.raises(NotFound):  # a completed upload is no more
        s3_storage.list_parts(KEY, upload_id)


def test_completion_never_replaces_an_object(s3_storage: S3Storage) -> None:
    s3_storage.put(KEY, b"first", "application/octet-stream")
    upload_id = s3_storage.create_multipart(KEY)
    etag = _put(s3_storage.presign_part(KEY, upload_id, 1, 60), b"second")
    with pytest.raises(KeyExists):
        s3_storage.complete_multipart(KEY, upload_id, [(1, etag)])
    assert s3_storage.get(KEY) == b"first"


def test_parts_s3_refuses_are_invalid_input(s3_storage: S3Storage) -> None:
    upload_id = s3_storage.create_multipart(KEY)
    _put(s3_storage.presign_part(KEY, upload_id, 1, 60), b"x")
    with pytest.raises(InvalidInput) as caught:
        s3_storage.complete_multipart(KEY, upload_id, [(1, '"' + "0" * 32 + '"')])
    assert caught.value.code == "invalid_part"
    with pytest.raises(InvalidInput):
        s3_storage.presign_part(KEY, upload_id, 10_001, 60)


def test_abort_drops_the_parts_and_is_idempotent(s3_storage: S3Storage) -> None:
    upload_id = s3_storage.create_multipart(KEY)
    _put(s3_storage.presign_part(KEY, upload_id, 1, 60), b"x")
    s3_storage.abort_multipart(KEY, upload_id)
    s3_storage.abort_multipart(KEY, upload_id)
    with pytest.raises(NotFound):
        s3_storage.list_parts(KEY, upload_id)
    assert not s3_storage.exists(KEY)


def test_a_presigned_post_writes_exactly_its_key(s3_storage: S3Storage) -> None:
    post = s3_storage.presign_post(KEY, 60, 1024)
    assert post.fields["key"] == KEY
    # What S3 enforces (moto does not check POST policies): this key only, 1..1024 bytes.
    conditions = json.loads(base64.b64decode(post.fields["policy"]))["conditions"]
    assert {"key": KEY} in conditions and ["content-length-range", 1, 1024] in conditions
    with requests.Session() as http:
        http.trust_env = False
        sent = http.post(post.url, data=post.fields, files={"file": ("x.bin", b"posted")}, timeout=30)
    assert sent.status_code == 204, sent.text
    assert s3_storage.get(KEY) == b"posted"
