"""Direct-to-S3 uploads against moto's server: the bytes go to presigned URLs over real HTTP, never through the API.

The calls are those of Uppy's `@uppy/aws-s3` with `endpoint: <API>/v1/media` (Companion's paths and
answers); the client is scripted here with `requests`, as the browser would send to the bucket.
"""

from __future__ import annotations

import hashlib
import io
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import numpy as np
import pytest
import requests
from fastapi.testclient import TestClient
from PIL import Image

from mediahub.db.models import utcnow
from mediahub.db.repositories.uploads import UploadRepository
from mediahub.errors import NotFound
from mediahub.media.upload_sweep import STRAY_GRACE, sweep_uploads
from mediahub.storage.factory import build_staging
from mediahub.storage.s3 import S3Storage
from tests.api.conftest import HOPPER, AppFactory, Tokens, assert_problem, upload
from tests.support.corpus import CORPUS_DIR, CorpusFile, corpus_images, corpus_videos
from tests.support.faults import FailingPuts
from tests.support.moderation_hook import FakeHook, fake_hook  # noqa: F401  (a fixture)

pytestmark = pytest.mark.s3

MB = 1024 * 1024
PART = 5 * MB
PHOTOS = "/v1/media/properties/123/photos"  # a gallery of images and videos
REJECTS = [pytest.param(f, id=f.name) for f in corpus_images("reject") + corpus_videos("reject")]


def _metadata(**extra: Any) -> dict[str, Any]:
    return {"entity_type": "property", "entity_id": "123", "entity_field": "photos", **extra}


@pytest.fixture
def owner(tokens: Tokens) -> dict[str, str]:
    return tokens.header("USR-1", grants=("property:123",))


@pytest.fixture
def bucket_http() -> Iterator[requests.Session]:
    """The browser's side: plain HTTP to the bucket's presigned URLs (no proxy from the environment)."""
    with requests.Session() as session:
        session.trust_env = False
        yield session


def _s3_app(app_factory: AppFactory, s3_server: str, **overrides: Any) -> TestClient:
    return TestClient(app_factory(storage_type="s3", s3_endpoint_url=s3_server, aws_access_key_id="testing",
                                  aws_secret_access_key="testing", s3_bucket_name=f"direct-{uuid.uuid4().hex[:12]}",
                                  **overrides))


@pytest.fixture
def s3_client(app_factory: AppFactory, s3_server: str) -> Iterator[TestClient]:
    with _s3_app(app_factory, s3_server) as client:
        client.app.state.runtime.storage.check()  # creates the bucket
        yield client


@pytest.fixture(scope="module")
def big_png(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A photo of more than one part: 1500x1300 RGB noise, which PNG cannot shrink (about 5.9 MB)."""
    pixels = np.random.default_rng(16).integers(0, 256, (1300, 1500, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(out, "PNG", compress_level=1)
    assert out.tell() > PART
    return out.getvalue()


def _store(client: TestClient) -> S3Storage:
    return client.app.state.runtime.storage


def _upload_row(client: TestClient, key: str):
    with client.app.state.runtime.database.session() as session:
        row = UploadRepository(session).get(key.rsplit("/", 1)[-1])
        if row is not None:
            session.expunge(row)
        return row


def _start(client: TestClient, headers: dict[str, str], **metadata: Any) -> tuple[str, str]:
    response = client.post("/v1/media/s3/multipart", headers=headers,
                           json={"filename": "photo.png", "type": "image/png", "metadata": _metadata(**metadata)})
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["key"].startswith("incoming/direct/")
    return body["key"], body["uploadId"]


def _put_part(client: TestClient, http: requests.Session, headers: dict[str, str], key: str, upload_id: str,
              number: int, data: bytes) -> str:
    """Sign one part as Uppy does, PUT it to the bucket; its ETag."""
    signed = client.get(f"/v1/media/s3/multipart/{upload_id}/{number}", params={"key": key}, headers=headers)
    assert signed.status_code == 200, signed.text
    assert signed.json()["expires"] == client.app.state.runtime.settings.direct_upload_url_seconds
    put = http.put(signed.json()["url"], data=data, timeout=30)
    assert put.status_code == 200, put.text
    return put.headers["ETag"]


def _complete(client: TestClient, headers: dict[str, str], key: str, upload_id: str,
              parts: list[tuple[int, str]]) -> Any:
    return client.post(f"/v1/media/s3/multipart/{upload_id}/complete", params={"key": key}, headers=headers,
                       json={"parts": [{"PartNumber": number, "ETag": etag} for number, etag in parts]})


def _multipart(client: TestClient, http: requests.Session, headers: dict[str, str], data: bytes,
               **metadata: Any) -> tuple[str, str, Any]:
    key, upload_id = _start(client, headers, **metadata)
    chunks = [data[offset:offset + PART] for offset in range(0, len(data), PART)]
    parts = [(number, _put_part(client, http, headers, key, upload_id, number, chunk))
             for number, chunk in enumerate(chunks, start=1)]
    return key, upload_id, _complete(client, headers, key, upload_id, parts)


def _post_form(client: TestClient, http: requests.Session, headers: dict[str, str], data: bytes,
               **metadata: Any) -> tuple[str, requests.Response]:
    """GET the presigned POST as Uppy does (metadata[name]=value), then send the form to the bucket."""
    query = {"filename": "photo.jpg", "type": "image/jpeg",
             **{f"metadata[{name}]": str(value) for name, value in _metadata(**metadata).items()}}
    params = client.get("/v1/media/s3/params", params=query, headers=headers)
    assert params.status_code == 200, params.text
    form = params.json()
    assert form["method"] == "POST" and form["fields"]["key"] == form["key"]
    sent = http.post(form["url"], data=form["fields"], files={"file": ("photo.jpg", data)}, timeout=30)
    return form["key"], sent


def _complete_post(client: TestClient, headers: dict[str, str], key: str) -> Any:
    return client.post("/v1/media/s3/params/complete", params={"key": key}, headers=headers)


def _assert_gone(client: TestClient, key: str, upload_id: str | None = None) -> None:
    store = _store(client)
    assert not store.exists(key)
    if upload_id is not None:
        with pytest.raises(NotFound):
            store.list_parts(key, upload_id)


# Multipart


def test_a_multipart_upload_becomes_an_item_served_like_any_other(s3_client: TestClient, owner: dict[str, str],
                                                                   bucket_http: requests.Session,
                                                                   big_png: bytes) -> None:
    key, upload_id, done = _multipart(s3_client, bucket_http, owner, big_png, caption="Hall", tags="a,b",
                                      alt_text="the hall")
    assert done.status_code == 201, done.text
    item = done.json()
    assert (item["entity_type"], item["entity_id"], item["entity_field"]) == ("property", "123", "gallery")
    assert (item["width"], item["height"], item["caption"], item["alt_text"], item["tags"]) == (
        1500, 1300, "Hall", "the hall", ["a", "b"])
    assert item["metadata"]["filename"] == "photo.png"
    assert item["location"].endswith(f"/v1/media/{item['id']}") and item["key"] == key
    assert s3_client.get(f"/v1/media/{item['id']}", headers=owner).status_code == 200
    served = bucket_http.get(item["url"], timeout=30)  # a presigned URL of the stored original
    assert served.status_code == 200 and served.content == big_png
    _assert_gone(s3_client, key)  # the staged object left the bucket once the item existed
    assert _upload_row(s3_client, key).media_id == item["id"]

    again = _complete(s3_client, owner, key, upload_id, [(1, "whatever")])  # the answer was lost: ask again
    assert again.status_code == 200 and again.json()["id"] == item["id"]
    assert_problem(s3_client.get(f"/v1/media/s3/multipart/{upload_id}/1", params={"key": key}, headers=owner),
                   404, "upload_finished")
    # Uppy aborts after every completion it takes for failed: nothing is left to abort, and that is no error.
    aborted = s3_client.delete(f"/v1/media/s3/multipart/{upload_id}", params={"key": key}, headers=owner)
    assert aborted.status_code == 200 and aborted.json() == {}
    assert s3_client.get(f"/v1/media/{item['id']}", headers=owner).status_code == 200


def test_direct_uploads_on_every_database(app_factory: AppFactory, s3_server: str, migrated_database_url: str,
                                         owner: dict[str, str], bucket_http: requests.Session) -> None:
    with _s3_app(app_factory, s3_server, database_url=migrated_database_url) as client:
        _store(client).check()
        key, upload_id, done = _multipart(client, bucket_http, owner, HOPPER.read_bytes(), tags="a,b")
        assert done.status_code == 201, done.text  # one part: the last may be small
        assert _complete(client, owner, key, upload_id, [(1, "x")]).json()["id"] == done.json()["id"]
        post_key, sent = _post_form(client, bucket_http, owner, HOPPER.read_bytes(), allow_duplicate="true")
        assert sent.status_code == 204
        assert _complete_post(client, owner, post_key).status_code == 201
        assert {_upload_row(client, k).state for k in (key, post_key)} == {"done"}


def test_an_interrupted_upload_resumes_from_the_listed_parts(s3_client: TestClient, owner: dict[str, str],
                                                             bucket_http: requests.Session, big_png: bytes) -> None:
    key, upload_id = _start(s3_client, owner)
    first = _put_part(s3_client, bucket_http, owner, key, upload_id, 1, big_png[:PART])
    # The connection dropped: a new client knows only key and uploadId (as Uppy's Golden Retriever keeps them).
    listed = s3_client.get(f"/v1/media/s3/multipart/{upload_id}", params={"key": key}, headers=owner)
    assert listed.status_code == 200, listed.text
    assert listed.json() == [{"PartNumber": 1, "ETag": first, "Size": PART}]
    batch = s3_client.get(f"/v1/media/s3/multipart/{upload_id}/batch", params={"key": key, "partNumbers": "2"},
                          headers=owner)
    assert batch.status_code == 200, batch.text
    put = bucket_http.put(batch.json()["presignedUrls"]["2"], data=big_png[PART:], timeout=30)
    assert put.status_code == 200
    parts = [(part["PartNumber"], part["ETag"]) for part in listed.json()] + [(2, put.headers["ETag"])]
    done = _complete(s3_client, owner, key, upload_id, parts)
    assert done.status_code == 201, done.text
    assert bucket_http.get(done.json()["url"], timeout=30).content == big_png


def test_parts_that_are_not_what_s3_holds_are_refused_and_the_upload_stays(
        s3_client: TestClient, owner: dict[str, str], bucket_http: requests.Session, big_png: bytes) -> None:
    key, upload_id = _start(s3_client, owner)
    first = _put_part(s3_client, bucket_http, owner, key, upload_id, 1, big_png[:PART])
    second = _put_part(s3_client, bucket_http, owner, key, upload_id, 2, big_png[PART:])
    wrong = '"' + "0" * 32 + '"'
    for parts, code in (([(1, wrong), (2, second)], "part_mismatch"),
                        ([(1, first), (3, second)], "part_mismatch"),  # never uploaded
                        ([(2, second), (1, first)], "invalid_parts"),
                        ([(1, first), (1, first)], "invalid_parts")):
        assert_problem(_complete(s3_client, owner, key, upload_id, parts), 422, code)
    assert _upload_row(s3_client, key).state == "receiving"

    small = _put_part(s3_client, bucket_http, owner, key, upload_id, 1, big_png[:MB])  # part 1 sent again, shorter
    assert_problem(_complete(s3_client, owner, key, upload_id, [(1, small), (2, second)]), 422, "part_too_small")
    again = _put_part(s3_client, bucket_http, owner, key, upload_id, 1, big_png[:PART])
    done = _complete(s3_client, owner, key, upload_id, [(1, again.strip('"')), (2, second)])  # unquoted works
    assert done.status_code == 201, done.text


def test_a_completion_cut_short_after_assembly_is_finished_by_the_next(
        s3_client: TestClient, owner: dict[str, str], bucket_http: requests.Session, big_png: bytes) -> None:
    ingest = s3_client.app.state.runtime.ingest
    ingest.storage = FailingPuts(ingest.storage, fail_on=1)  # the item's first object cannot be stored
    key, upload_id, failed = _multipart(s3_client, bucket_http, owner, big_png)
    assert_problem(failed, 503, "storage_unavailable")
    assert _store(s3_client).exists(key) and _upload_row(s3_client, key).state == "receiving"  # kept for a retry
    ingest.storage.armed = False
    done = _complete(s3_client, owner, key, upload_id, [(1, "assembled already")])
    assert done.status_code == 201, done.text
    assert bucket_http.get(done.json()["url"], timeout=30).content == big_png
    _assert_gone(s3_client, key)


def test_only_the_creator_reaches_an_upload(s3_client: TestClient, owner: dict[str, str], tokens: Tokens,
                                           bucket_http: requests.Session, big_png: bytes) -> None:
    key, upload_id = _start(s3_client, owner)
    etag = _put_part(s3_client, bucket_http, owner, key, upload_id, 1, big_png[:PART])
    other_key, other_id = _start(s3_client, owner)
    # A stranger with the right to upload there too: the upload is not theirs.
    stranger = tokens.header("USR-2", grants=("property:123",))
    base = f"/v1/media/s3/multipart/{upload_id}"
    for headers, query, path in ((stranger, key, base), (owner, other_key, base),
                                 (owner, key, f"/v1/media/s3/multipart/{other_id}"),
                                 (owner, "incoming/direct/nothing-here", base)):
        params = {"key": query}
        assert_problem(s3_client.get(f"{path}/1", params=params, headers=headers), 404, "upload_not_found")
        assert_problem(s3_client.get(f"{path}/batch", params={**params, "partNumbers": "1,2"}, headers=headers),
                       404, "upload_not_found")
        assert_problem(s3_client.get(path, params=params, headers=headers), 404, "upload_not_found")
        assert_problem(s3_client.post(f"{path}/complete", params=params, headers=headers,
                                      json={"parts": [{"PartNumber": 1, "ETag": etag}]}), 404, "upload_not_found")
        assert_problem(s3_client.delete(path, params=params, headers=headers), 404, "upload_not_found")
    assert_problem(s3_client.get(base, params={"key": key}), 401)
    assert [part.number for part in _store(s3_client).list_parts(key, upload_id)] == [1]  # untouched


def test_a_caller_who_may_not_upload_there_gets_no_upload(s3_client: TestClient, tokens: Tokens) -> None:
    response = s3_client.post("/v1/media/s3/multipart", headers=tokens.user(),
                              json={"filename": "x.jpg", "metadata": _metadata()})
    assert_problem(response, 403, "upload_forbidden")
    params = s3_client.get("/v1/media/s3/params", headers=tokens.user(),
                           params={f"metadata[{name}]": value for name, value in _metadata().items()})
    assert_problem(params, 403, "upload_forbidden")
    assert list(_store(s3_client).list("incoming/")) == []
    missing = s3_client.post("/v1/media/s3/multipart", headers=tokens.user(), json={"metadata": {"entity_id": "1"}})
    assert_problem(missing, 422, "validation_error")


def test_aborting_removes_the_parts_and_the_upload(s3_client: TestClient, owner: dict[str, str],
                                                   bucket_http: requests.Session, big_png: bytes) -> None:
    key, upload_id = _start(s3_client, owner)
    _put_part(s3_client, bucket_http, owner, key, upload_id, 1, big_png[:PART])
    aborted = s3_client.delete(f"/v1/media/s3/multipart/{upload_id}", params={"key": key}, headers=owner)
    assert aborted.status_code == 200 and aborted.json() == {}
    _assert_gone(s3_client, key, upload_id)
    assert _upload_row(s3_client, key) is None
    assert_problem(s3_client.get(f"/v1/media/s3/multipart/{upload_id}", params={"key": key}, headers=owner),
                   404, "upload_not_found")


def test_the_byte_cap_holds_for_signing_and_for_completion(app_factory: AppFactory, s3_server: str,
                                                          owner: dict[str, str],
                                                          bucket_http: requests.Session) -> None:
    cap = 6 * MB  # two parts at most
    with _s3_app(app_factory, s3_server, max_image_size=cap, max_video_size=cap) as client:
        _store(client).check()
        key, upload_id = _start(client, owner)
        third = client.get(f"/v1/media/s3/multipart/{upload_id}/3", params={"key": key}, headers=owner)
        assert assert_problem(third, 413, "too_many_parts")["max_parts"] == 2
        parts = [(1, _put_part(client, bucket_http, owner, key, upload_id, 1, b"\xff" * PART)),
                 (2, _put_part(client, bucket_http, owner, key, upload_id, 2, b"\xff" * (2 * MB)))]
        assert assert_problem(_complete(client, owner, key, upload_id, parts), 413, "too_large")["limit"] == cap
        _assert_gone(client, key, upload_id)
        assert_problem(_complete(client, owner, key, upload_id, parts), 413, "too_large")  # the recorded outcome

        key, sent = _post_form(client, bucket_http, owner, b"\xff" * (cap + 1))
        # moto 5.2 does not check a POST policy's content-length-range (S3 answers 400 EntityTooLarge):
        # completion holds the cap whatever the bucket let through.
        assert sent.status_code in (204, 400), sent.text
        if sent.status_code == 204:
            assert_problem(_complete_post(client, owner, key), 413, "too_large")
        _assert_gone(client, key)


def test_a_rejected_file_sent_in_parts_is_refused_as_a_form_upload_is(
        s3_client: TestClient, owner: dict[str, str], bucket_http: requests.Session) -> None:
    truncated = CORPUS_DIR / "images/bad/truncated_jpeg.jpg"
    key, upload_id, done = _multipart(s3_client, bucket_http, owner, truncated.read_bytes())
    form = upload(s3_client, PHOTOS, owner, file=truncated)
    assert_problem(done, form.status_code, form.json()["code"])
    _assert_gone(s3_client, key, upload_id)
    assert _upload_row(s3_client, key).state == "failed"


# Presigned POST


def test_a_presigned_post_becomes_an_item(s3_client: TestClient, owner: dict[str, str],
                                          bucket_http: requests.Session) -> None:
    data = HOPPER.read_bytes()
    key, sent = _post_form(s3_client, bucket_http, owner, data, is_primary="true", tags='["x"]',
                           sha256=hashlib.sha256(data).hexdigest().upper())
    assert sent.status_code == 204, sent.text
    done = _complete_post(s3_client, owner, key)
    assert done.status_code == 201, done.text
    item = done.json()
    assert (item["width"], item["is_primary"], item["tags"], item["key"]) == (128, True, ["x"], key)
    served = bucket_http.get(item["url"], timeout=30)
    assert served.status_code == 200 and served.content.startswith(b"\xff\xd8")  # stored as a form upload's
    _assert_gone(s3_client, key)
    assert _complete_post(s3_client, owner, key).json()["id"] == item["id"]


def test_a_duplicate_is_refused_as_a_form_upload_is(app_factory: AppFactory, s3_server: str,
                                                   owner: dict[str, str], bucket_http: requests.Session) -> None:
    with _s3_app(app_factory, s3_server, dedup_policy="reject") as client:
        _store(client).check()
        assert upload(client, PHOTOS, owner).status_code == 201
        form = upload(client, PHOTOS, owner)
        key, _ = _post_form(client, bucket_http, owner, HOPPER.read_bytes())
        direct = assert_problem(_complete_post(client, owner, key), form.status_code, "duplicate")
        assert direct["duplicate_of"] == form.json()["duplicate_of"]
        _assert_gone(client, key)


def test_completing_a_post_before_the_file_arrived_is_409(s3_client: TestClient, owner: dict[str, str]) -> None:
    query = {f"metadata[{name}]": value for name, value in _metadata().items()}
    key = s3_client.get("/v1/media/s3/params", params=query, headers=owner).json()["key"]
    assert_problem(_complete_post(s3_client, owner, key), 409, "upload_incomplete")
    assert _upload_row(s3_client, key).state == "receiving"


def test_a_file_unlike_its_declared_sha256_is_refused_and_removed(s3_client: TestClient, owner: dict[str, str],
                                                                  bucket_http: requests.Session) -> None:
    key, sent = _post_form(s3_client, bucket_http, owner, HOPPER.read_bytes(), sha256="0" * 64)
    assert sent.status_code == 204
    assert_problem(_complete_post(s3_client, owner, key), 460, "checksum_mismatch")
    _assert_gone(s3_client, key)


@pytest.mark.parametrize("corpus_file", REJECTS)
def test_rejected_corpus_files_get_the_form_uploads_answer(s3_client: TestClient, owner: dict[str, str],
                                                           bucket_http: requests.Session,
                                                           corpus_file: CorpusFile) -> None:
    form = upload(s3_client, PHOTOS, owner, file=corpus_file.path)
    key, sent = _post_form(s3_client, bucket_http, owner, corpus_file.path.read_bytes())
    assert sent.status_code == 204, sent.text
    direct = _complete_post(s3_client, owner, key)
    body = assert_problem(direct, form.status_code, form.json()["code"])
    assert body["detail"] == form.json()["detail"]
    _assert_gone(s3_client, key)


# Expiry


def test_expired_direct_uploads_are_swept_with_their_bytes(s3_client: TestClient, owner: dict[str, str],
                                                           bucket_http: requests.Session) -> None:
    key, upload_id = _start(s3_client, owner)
    _put_part(s3_client, bucket_http, owner, key, upload_id, 1, b"x" * PART)
    post_key, sent = _post_form(s3_client, bucket_http, owner, HOPPER.read_bytes())
    assert sent.status_code == 204
    runtime = s3_client.app.state.runtime
    later = utcnow() + timedelta(seconds=runtime.settings.upload_expiry_seconds + 1)
    swept = sweep_uploads(runtime.database, build_staging(runtime.settings, runtime.storage), later, STRAY_GRACE)
    assert swept.expired == 2
    _assert_gone(s3_client, key, upload_id)
    _assert_gone(s3_client, post_key)
    assert _upload_row(s3_client, key) is None and _upload_row(s3_client, post_key) is None


# Another store


def test_without_the_s3_store_the_endpoints_are_404(client: TestClient, owner: dict[str, str]) -> None:
    created = client.post("/v1/media/s3/multipart", headers=owner, json={"metadata": _metadata()})
    assert_problem(created, 404, "direct_uploads_unavailable")
    assert_problem(client.get("/v1/media/s3/params", headers=owner), 404, "direct_uploads_unavailable")
    assert_problem(client.post("/v1/media/s3/params/complete", params={"key": "incoming/direct/x"}, headers=owner),
                   404, "direct_uploads_unavailable")


def test_a_direct_upload_waits_for_the_moderation_checks(app_factory: AppFactory, s3_server: str,
                                                          fake_hook: FakeHook, bucket_http: requests.Session) -> None:
    """Uploaded by a verified owner, it would start approved: it waits for the hook, which refuses it."""
    fake_hook.status = 403
    verified = Tokens().header("USR-1", verified=True, grants=("property:123",))
    with _s3_app(app_factory, s3_server, moderation_checks="hook", moderation_hook_url=fake_hook.url) as client:
        _store(client).check()
        _, _, done = _multipart(client, bucket_http, verified, HOPPER.read_bytes())
        item = done.json()
        assert done.status_code == 201 and item["moderation_status"] == "pending", done.text
        assert client.app.state.runtime.wait_for_jobs([item["id"]], 60)
        flagged = client.get(f"/v1/media/{item['id']}", headers=verified).json()
    assert flagged["moderation_status"] == "flagged" and "hook_rejected" in flagged["moderation_reason"]
    assert len(fake_hook.calls) == 1
