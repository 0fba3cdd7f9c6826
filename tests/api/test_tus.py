"""tus 1.0.0 at /v1/media/tus/: the protocol, its extensions, and the same ingest as a form upload.

Hand-written requests here, for what no client library sends; tests/clients drives real clients.
"""

from __future__ import annotations

import base64
import hashlib
import socket
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from fastapi.testclient import TestClient

from mediahub.db.models import Upload
from tests.api.conftest import HOPPER, AppFactory, Tokens, upload
from tests.support.corpus import CORPUS_DIR, CorpusFile, corpus_files

TUS = {"Tus-Resumable": "1.0.0"}
OCTETS = {"Content-Type": "application/offset+octet-stream"}
AVATAR = {"entity_type": "user", "entity_id": "USR-1", "entity_field": "avatar"}
PHOTOS = {"entity_type": "property", "entity_id": "123", "entity_field": "photos"}
BIG_JPEG = CORPUS_DIR / "images/good/jpeg_flower.jpg"


def metadata(**fields: Any) -> str:
    return ",".join(f"{key} {base64.b64encode(str(value).encode()).decode()}" for key, value in fields.items())


def create(client: TestClient, headers: dict[str, str], length: int | None, fields: dict[str, Any] | None = None,
           **extra: str) -> Any:
    sizes = {"Upload-Length": str(length)} if length is not None else {"Upload-Defer-Length": "1"}
    meta = {"Upload-Metadata": metadata(**(AVATAR if fields is None else fields))}
    return client.post("/v1/media/tus/", headers={**headers, **TUS, **sizes, **meta, **extra})


def patch(client: TestClient, url: str, headers: dict[str, str], offset: int, body: bytes, **extra: str) -> Any:
    return client.patch(url, headers={**headers, **TUS, **OCTETS, "Upload-Offset": str(offset), **extra},
                        content=body)


def send_all(client: TestClient, headers: dict[str, str], data: bytes, chunk: int,
             fields: dict[str, Any] | None = None) -> tuple[str | None, Any]:
    created = create(client, headers, len(data), fields)
    if not data:  # complete as created: the creation answers with the ingest's outcome
        return None, created
    assert created.status_code == 201, created.text
    url = created.headers["location"]
    response = None
    for offset in range(0, len(data), chunk):
        response = patch(client, url, headers, offset, data[offset:offset + chunk])
        assert response.status_code in (204, 413, 415, 422), response.text
        if response.status_code != 204:
            break
    return url, response


def item_of(client: TestClient, headers: dict[str, str], media_id: str) -> dict[str, Any]:
    response = client.get(f"/v1/media/{media_id}", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def test_options_discovers_the_protocol(client: TestClient) -> None:
    response = client.options("/v1/media/tus/")
    assert response.status_code == 204
    assert response.headers["tus-version"] == "1.0.0"
    assert set(response.headers["tus-extension"].split(",")) == {
        "creation", "creation-with-upload", "creation-defer-length", "expiration", "checksum", "termination",
        "concatenation"}
    assert set(response.headers["tus-checksum-algorithm"].split(",")) == {"sha1", "sha256", "md5"}
    assert int(response.headers["tus-max-size"]) >= 20 * 1024 * 1024


@pytest.mark.parametrize("version", [None, "0.2.2", "1.0"])
def test_another_protocol_version_is_412(client: TestClient, tokens: Tokens, version: str | None) -> None:
    headers = {**tokens.header("USR-1"), "Upload-Length": "10", "Upload-Metadata": metadata(**AVATAR)}
    if version:
        headers["Tus-Resumable"] = version
    response = client.post("/v1/media/tus/", headers=headers)
    assert response.status_code == 412
    assert response.json()["code"] == "tus_version"
    assert response.headers["tus-version"] == "1.0.0"


def test_chunks_make_the_same_item_as_a_form_upload(client: TestClient, tokens: Tokens) -> None:
    owner = tokens.header("USR-1")
    data = BIG_JPEG.read_bytes()
    created = create(client, owner, len(data), {**AVATAR, "filename": "me.jpg", "alt_text": "Me", "tags": "a,b"})
    assert created.status_code == 201, created.text
    assert created.headers["tus-resumable"] == "1.0.0"
    assert "upload-expires" in created.headers
    url = created.headers["location"]
    assert url.startswith("http://testserver/v1/media/tus/")
    chunk = len(data) // 3 + 1
    for offset in range(0, len(data), chunk):
        head = client.head(url, headers={**owner, **TUS})
        assert head.status_code == 200 and head.headers["upload-offset"] == str(offset)
        assert head.headers["upload-length"] == str(len(data)) and head.headers["cache-control"] == "no-store"
        response = patch(client, url, owner, offset, data[offset:offset + chunk])
        assert response.status_code == 204, response.text
        assert response.headers["upload-offset"] == str(min(offset + chunk, len(data)))
    media_id = response.headers["media-id"]
    assert response.headers["location"].endswith(f"/v1/media/{media_id}")
    item = item_of(client, owner, media_id)
    assert item["alt_text"] == "Me" and item["tags"] == ["a", "b"] and item["entity_field"] == "avatar"
    outcome = client.get(url, headers={**owner, **TUS})
    assert outcome.status_code == 200 and outcome.json()["id"] == int(media_id)
    head = client.head(url, headers={**owner, **TUS})
    assert head.headers["media-id"] == media_id and head.headers["upload-offset"] == str(len(data))
    form = upload(client, "/v1/media/users/USR-1/cover", owner, file=BIG_JPEG).json()
    assert (item["width"], item["height"], item["content_type"]) == (form["width"], form["height"],
                                                                      form["content_type"])


def test_the_stored_original_hashes_as_sent(client: TestClient, tokens: Tokens, app: Any) -> None:
    owner = tokens.header("USR-1")
    data = HOPPER.read_bytes()
    _, response = send_all(client, owner, data, 1000)
    media_id = int(response.headers["media-id"])
    runtime = client.app.state.runtime
    from mediahub.db.repositories import MediaRepository

    with runtime.database.session() as session:
        assert MediaRepository(session).get(media_id).sha256 == hashlib.sha256(data).hexdigest()


def test_an_offset_that_is_not_the_uploads_is_409_and_changes_nothing(client: TestClient, tokens: Tokens) -> None:
    owner = tokens.header("USR-1")
    data = HOPPER.read_bytes()
    url = create(client, owner, len(data)).headers["location"]
    assert patch(client, url, owner, 0, data[:100]).status_code == 204
    for wrong in (0, 50, 101, 10**6):
        response = patch(client, url, owner, wrong, data[wrong:wrong + 10])
        assert response.status_code == 409, response.text
        assert response.json()["code"] == "offset_mismatch" and response.json()["offset"] == 100
    assert client.head(url, headers={**owner, **TUS}).headers["upload-offset"] == "100"


@pytest.mark.parametrize("algorithm", ["sha1", "sha256", "md5"])
def test_checksums_are_checked_and_a_mismatch_keeps_nothing(client: TestClient, tokens: Tokens,
                                                            algorithm: str) -> None:
    owner = tokens.header("USR-1")
    data = HOPPER.read_bytes()
    url = create(client, owner, len(data)).headers["location"]
    first = data[:2000]
    good = base64.b64encode(hashlib.new(algorithm, first).digest()).decode()
    assert patch(client, url, owner, 0, first, **{"Upload-Checksum": f"{algorithm} {good}"}).status_code == 204
    rest = data[2000:]
    bad = base64.b64encode(hashlib.new(algorithm, rest + b"x").digest()).decode()
    response = patch(client, url, owner, 2000, rest, **{"Upload-Checksum": f"{algorithm} {bad}"})
    assert response.status_code == 460 and response.json()["code"] == "checksum_mismatch"
    assert client.head(url, headers={**owner, **TUS}).headers["upload-offset"] == "2000"
    right = base64.b64encode(hashlib.new(algorithm, rest).digest()).decode()
    done = patch(client, url, owner, 2000, rest, **{"Upload-Checksum": f"{algorithm} {right}"})
    assert done.status_code == 204 and "media-id" in done.headers


@pytest.mark.parametrize("header", ["crc32 AAAA", "sha1 not*base64", "sha1"])
def test_an_unusable_checksum_header_is_400(client: TestClient, tokens: Tokens, header: str) -> None:
    owner = tokens.header("USR-1")
    url = create(client, owner, 100).headers["location"]
    response = patch(client, url, owner, 0, b"x" * 10, **{"Upload-Checksum": header})
    assert response.status_code == 400 if header != "sha1" else response.status_code == 460


def test_creation_with_upload_answers_with_the_item(client: TestClient, tokens: Tokens) -> None:
    owner = tokens.header("USR-1")
    data = HOPPER.read_bytes()
    response = client.post("/v1/media/tus/", headers={**owner, **TUS, **OCTETS, "Upload-Length": str(len(data)),
                                                        "Upload-Metadata": metadata(**AVATAR)}, content=data)
    assert response.status_code == 201, response.text
    assert response.headers["upload-offset"] == str(len(data))
    assert response.headers["location"].startswith("http://testserver/v1/media/tus/")
    item_of(client, owner, response.headers["media-id"])


def test_creation_with_part_of_the_upload_continues_by_patch(client: TestClient, tokens: Tokens) -> None:
    owner = tokens.header("USR-1")
    data = HOPPER.read_bytes()
    response = client.post("/v1/media/tus/", headers={**owner, **TUS, **OCTETS, "Upload-Length": str(len(data)),
                                                        "Upload-Metadata": metadata(**AVATAR)}, content=data[:500])
    assert response.status_code == 201 and response.headers["upload-offset"] == "500"
    done = patch(client, response.headers["location"], owner, 500, data[500:])
    assert done.status_code == 204 and "media-id" in done.headers


def test_a_deferred_length_is_declared_by_a_later_patch(client: TestClient, tokens: Tokens) -> None:
    owner = tokens.header("USR-1")
    data = HOPPER.read_bytes()
    created = create(client, owner, None)
    assert created.status_code == 201
    url = created.headers["location"]
    head = client.head(url, headers={**owner, **TUS})
    assert head.headers["upload-defer-length"] == "1" and "upload-length" not in head.headers
    assert patch(client, url, owner, 0, data[:1000]).status_code == 204
    done = patch(client, url, owner, 1000, data[1000:], **{"Upload-Length": str(len(data))})
    assert done.status_code == 204 and "media-id" in done.headers


def test_a_length_over_the_cap_is_refused_at_creation(app_factory: AppFactory, tokens: Tokens) -> None:
    with TestClient(app_factory(max_image_size=10_000, max_video_size=10_000)) as client:
        owner = tokens.header("USR-1")
        response = create(client, owner, 10_001)
        assert response.status_code == 413 and response.json()["code"] == "too_large"
        deferred = create(client, owner, None).headers["location"]
        response = patch(client, deferred, owner, 0, b"x" * 10_001)
        assert response.status_code == 413 and response.json()["code"] == "beyond_length"
        assert client.head(deferred, headers={**owner, **TUS}).headers["upload-offset"] == "0"
        with client.app.state.runtime.database.session() as session:
            assert session.query(Upload).count() == 1  # the refused creation left no row


def test_bytes_beyond_the_declared_length_are_refused(client: TestClient, tokens: Tokens) -> None:
    owner = tokens.header("USR-1")
    url = create(client, owner, 100).headers["location"]
    response = patch(client, url, owner, 0, b"x" * 101)
    assert response.status_code == 413 and response.json()["code"] == "beyond_length"
    assert client.head(url, headers={**owner, **TUS}).headers["upload-offset"] == "0"


def test_termination_removes_the_upload(client: TestClient, tokens: Tokens) -> None:
    owner = tokens.header("USR-1")
    url = create(client, owner, 5000).headers["location"]
    assert patch(client, url, owner, 0, b"x" * 100).status_code == 204
    assert client.delete(url, headers={**owner, **TUS}).status_code == 204
    assert client.head(url, headers={**owner, **TUS}).status_code == 404
    assert patch(client, url, owner, 100, b"x").status_code == 404
    staged = list((client.app.state.runtime.settings.temp_dir).rglob("*"))
    assert not [path for path in staged if path.is_file()]


def test_only_the_creator_sees_or_touches_an_upload(client: TestClient, tokens: Tokens) -> None:
    owner, admin = tokens.header("USR-1"), tokens.admin()
    url = create(client, owner, 5000).headers["location"]
    for headers in (tokens.header("USR-2"), admin):
        assert client.head(url, headers={**headers, **TUS}).status_code == 404
        assert client.get(url, headers={**headers, **TUS}).status_code == 404
        assert patch(client, url, headers, 0, b"x").status_code == 404
        assert client.delete(url, headers={**headers, **TUS}).status_code == 404
    assert client.head(url, headers=TUS).status_code == 401
    assert client.head(url, headers={**owner, **TUS}).headers["upload-offset"] == "0"


def test_the_target_is_authorised_at_creation(client: TestClient, tokens: Tokens) -> None:
    assert create(client, tokens.header("USR-2"), 100).status_code == 403
    assert create(client, {}, 100).status_code == 401
    missing = create(client, tokens.header("USR-1"), 100, {"entity_type": "user", "entity_id": "USR-1"})
    assert missing.status_code == 422 and missing.json()["code"] == "missing_target"
    no_such_field = create(client, tokens.header("USR-1"), 100, {**AVATAR, "entity_field": "photos"})
    assert no_such_field.status_code == 422


@pytest.mark.parametrize("header", ["entity_type !!!", "a YQ==,a YQ==", "k v w"])
def test_malformed_metadata_is_400(client: TestClient, tokens: Tokens, header: str) -> None:
    response = client.post("/v1/media/tus/", headers={**tokens.header("USR-1"), **TUS, "Upload-Length": "1",
                                                        "Upload-Metadata": header})
    assert response.status_code == 400 and response.json()["code"] == "invalid_metadata"


@pytest.mark.parametrize("headers", [{"Upload-Length": "-1"}, {"Upload-Length": "1e3"}, {},
                                     {"Upload-Length": "1", "Upload-Defer-Length": "1"},
                                     {"Upload-Defer-Length": "2"}, {"Upload-Length": "9" * 30}])
def test_bad_lengths_are_400(client: TestClient, tokens: Tokens, headers: dict[str, str]) -> None:
    response = client.post("/v1/media/tus/", headers={**tokens.header("USR-1"), **TUS, **headers,
                                                        "Upload-Metadata": metadata(**AVATAR)})
    assert response.status_code == 400, response.text


def test_patch_needs_offset_and_the_tus_content_type(client: TestClient, tokens: Tokens) -> None:
    owner = tokens.header("USR-1")
    url = create(client, owner, 100).headers["location"]
    response = client.patch(url, headers={**owner, **TUS, "Content-Type": "application/octet-stream",
                                          "Upload-Offset": "0"}, content=b"x")
    assert response.status_code == 415
    response = client.patch(url, headers={**owner, **TUS, **OCTETS}, content=b"x")
    assert response.status_code == 400 and response.json()["code"] == "missing_offset"


@pytest.mark.parametrize("corpus_file", [f for f in corpus_files() if not f.accepted],
                         ids=lambda f: f.name)
def test_refused_files_get_the_form_uploads_code(client: TestClient, tokens: Tokens, corpus_file: CorpusFile) -> None:
    admin = tokens.admin()
    form = upload(client, "/v1/media/properties/123/photos", admin, file=corpus_file.path)
    assert 400 <= form.status_code < 500
    data = corpus_file.path.read_bytes()
    url, response = send_all(client, admin, data, 64 * 1024, PHOTOS)
    assert response.json()["code"] == form.json()["code"], response.text
    if url is None:
        return
    outcome = client.get(url, headers={**admin, **TUS})
    assert outcome.json()["code"] == form.json()["code"]
    head = client.head(url, headers={**admin, **TUS})
    assert head.status_code == 200 and head.headers["media-error"] == form.json()["code"]


def test_a_duplicate_is_422_on_tus_with_the_form_uploads_code(app_factory: AppFactory, tokens: Tokens) -> None:
    with TestClient(app_factory(dedup_policy="reject")) as client:
        owner = tokens.admin()
        data = HOPPER.read_bytes()
        assert upload(client, "/v1/media/properties/123/photos", owner).status_code == 201
        again = upload(client, "/v1/media/properties/123/photos", owner)
        assert again.status_code == 409
        url, response = send_all(client, owner, data, 4096, PHOTOS)
        assert response.status_code == 422 and response.json()["code"] == again.json()["code"] == "duplicate"
        assert client.get(url, headers={**owner, **TUS}).status_code == 409  # GET answers as the form did


def test_a_client_that_lost_the_last_answer_gets_it_again(client: TestClient, tokens: Tokens) -> None:
    owner = tokens.header("USR-1")
    data = HOPPER.read_bytes()
    url, response = send_all(client, owner, data, len(data))
    again = patch(client, url, owner, len(data), b"")
    assert again.status_code == 204 and again.headers["media-id"] == response.headers["media-id"]
    more = patch(client, url, owner, len(data), b"x")
    assert more.status_code == 409 and more.json()["code"] == "upload_complete"


def test_a_busy_upload_is_423_for_another_request(client: TestClient, tokens: Tokens) -> None:
    owner = tokens.header("USR-1")
    url = create(client, owner, 5000).headers["location"]
    lease = client.app.state.runtime.uploads.lease(url.rsplit("/", 1)[-1])
    try:
        response = patch(client, url, owner, 0, b"x" * 10)
        assert response.status_code == 423 and response.json()["code"] == "upload_locked"
        assert "retry-after" in response.headers
        assert client.head(url, headers={**owner, **TUS}).status_code == 200  # HEAD never waits for the lease
    finally:
        lease.release()
    assert patch(client, url, owner, 0, b"x" * 10).status_code == 204


def test_concatenation_joins_partial_uploads(client: TestClient, tokens: Tokens) -> None:
    owner = tokens.header("USR-1")
    data = HOPPER.read_bytes()
    cut = len(data) // 3
    parts = []
    for piece in (data[:cut], data[cut:2 * cut], data[2 * cut:]):
        created = client.post("/v1/media/tus/", headers={**owner, **TUS, "Upload-Concat": "partial",
                                                           "Upload-Length": str(len(piece))})
        assert created.status_code == 201, created.text
        assert patch(client, created.headers["location"], owner, 0, piece).status_code == 204
        assert client.head(created.headers["location"], headers={**owner, **TUS}).headers["upload-concat"] == "partial"
        parts.append(created.headers["location"])
    final = {**owner, **TUS, "Upload-Concat": "final;" + " ".join(parts), "Upload-Metadata": metadata(**AVATAR)}
    response = client.post("/v1/media/tus/", headers=final)
    assert response.status_code == 201, response.text
    media_id = response.headers["media-id"]
    assert client.head(response.headers["location"], headers={**owner, **TUS}).headers["upload-concat"].startswith(
        "final;")
    again = client.post("/v1/media/tus/", headers=final)  # a client whose answer was lost asks again
    assert again.status_code == 201 and again.headers["media-id"] == media_id
    assert patch(client, response.headers["location"], owner, 0, b"x").status_code == 403


def test_a_final_upload_needs_complete_partials_of_the_caller(client: TestClient, tokens: Tokens) -> None:
    owner = tokens.header("USR-1")
    partial = client.post("/v1/media/tus/", headers={**owner, **TUS, "Upload-Concat": "partial",
                                                       "Upload-Length": "100"}).headers["location"]
    final = {"Upload-Concat": f"final;{partial}", "Upload-Metadata": metadata(**AVATAR)}
    response = client.post("/v1/media/tus/", headers={**owner, **TUS, **final})
    assert response.status_code == 409 and response.json()["code"] == "partial_incomplete"
    theirs = metadata(**{**AVATAR, "entity_id": "USR-2"})
    stranger = client.post("/v1/media/tus/", headers={**tokens.header("USR-2"), **TUS, **final,
                                                        "Upload-Metadata": theirs})
    assert stranger.status_code == 404


def test_method_override_lets_a_post_patch(client: TestClient, tokens: Tokens) -> None:
    owner = tokens.header("USR-1")
    data = HOPPER.read_bytes()
    url = create(client, owner, len(data)).headers["location"]
    response = client.post(url, headers={**owner, **TUS, **OCTETS, "Upload-Offset": "0",
                                         "X-HTTP-Method-Override": "PATCH"}, content=data)
    assert response.status_code == 204 and "media-id" in response.headers


def test_locations_honour_public_base_url(app_factory: AppFactory, tokens: Tokens) -> None:
    with TestClient(app_factory(public_base_url="https://media.example.com/api")) as client:
        owner = tokens.header("USR-1")
        created = create(client, owner, 10)
        assert created.headers["location"].startswith("https://media.example.com/api/v1/media/tus/")


def test_open_uploads_are_limited_per_caller(app_factory: AppFactory, tokens: Tokens) -> None:
    with TestClient(app_factory(upload_max_open=2)) as client:
        owner = tokens.header("USR-1")
        urls = [create(client, owner, 100).headers["location"] for _ in range(2)]
        response = create(client, owner, 100)
        assert response.status_code == 429 and response.json()["code"] == "too_many_uploads"
        assert create(client, tokens.header("USR-2"), 100, {**AVATAR, "entity_id": "USR-2"}).status_code == 201
        client.delete(urls[0], headers={**owner, **TUS})
        assert create(client, owner, 100).status_code == 201


def test_a_final_upload_is_not_refused_for_the_partials_it_joins(app_factory: AppFactory, tokens: Tokens) -> None:
    with TestClient(app_factory(upload_max_open=2)) as client:
        owner = tokens.header("USR-1")
        data = HOPPER.read_bytes()
        parts = []
        for piece in (data[:1000], data[1000:]):
            created = client.post("/v1/media/tus/", headers={**owner, **TUS, "Upload-Concat": "partial",
                                                               "Upload-Length": str(len(piece))})
            patch(client, created.headers["location"], owner, 0, piece)
            parts.append(created.headers["location"])
        final = client.post("/v1/media/tus/", headers={**owner, **TUS, "Upload-Concat": "final;" + " ".join(parts),
                                                         "Upload-Metadata": metadata(**AVATAR)})
        assert final.status_code == 201 and "media-id" in final.headers, final.text
        assert create(client, owner, 100).status_code == 201  # the joined partials no longer count as open


def test_creations_count_against_the_upload_rate_limit(app_factory: AppFactory, tokens: Tokens) -> None:
    with TestClient(app_factory(upload_rate_limit=2)) as client:
        owner = tokens.header("USR-1")
        assert [create(client, owner, 100).status_code for _ in range(3)] == [201, 201, 429]


def test_a_single_slot_takes_the_later_of_two_uploads(client: TestClient, tokens: Tokens) -> None:
    owner = tokens.header("USR-1")
    first = create(client, owner, len(HOPPER.read_bytes())).headers["location"]
    data = BIG_JPEG.read_bytes()
    _, second = send_all(client, owner, data, len(data))
    done = patch(client, first, owner, 0, HOPPER.read_bytes())
    assert second.status_code == 204 and done.status_code == 204
    listing = client.get("/v1/media/entity/user/USR-1", headers=owner).json()
    avatars = [item for item in listing["items"] if item["entity_field"] == "avatar"]
    assert [item["id"] for item in avatars] == [int(done.headers["media-id"])]


def test_staged_bytes_are_gone_once_the_upload_is_done(client: TestClient, tokens: Tokens, tmp_path: Path) -> None:
    owner = tokens.header("USR-1")
    send_all(client, owner, HOPPER.read_bytes(), 1000)
    leftovers = [path for path in (client.app.state.runtime.settings.temp_dir).rglob("*") if path.is_file()]
    assert leftovers == []


def test_a_client_that_goes_away_mid_body_keeps_what_arrived(live_server, tokens: Tokens,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    """tus: the server keeps the bytes of a PATCH cut short, so the client resumes from them."""
    owner = tokens.header("USR-1")
    data = BIG_JPEG.read_bytes()
    created = requests.post(f"{live_server.url}/v1/media/tus/", timeout=10, headers={
        **owner, **TUS, "Upload-Length": str(len(data)), "Upload-Metadata": metadata(**AVATAR)})
    path = urlsplit(created.headers["location"]).path
    sent = 30_000
    head = (f"PATCH {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {owner['Authorization']}\r\n"
            f"Tus-Resumable: 1.0.0\r\nContent-Type: application/offset+octet-stream\r\nUpload-Offset: 0\r\n"
            f"Content-Length: {len(data)}\r\n\r\n")
    with socket.create_connection(("127.0.0.1", live_server.port), timeout=10) as sock:
        sock.sendall(head.encode() + data[:sent])
        time.sleep(0.5)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        answer = requests.head(created.headers["location"], headers={**owner, **TUS}, timeout=10)
        offset = answer.headers["upload-offset"]
        if offset == str(sent):
            break
        time.sleep(0.1)
    assert offset == str(sent)
    done = requests.patch(created.headers["location"], data=data[sent:], timeout=30, headers={
        **owner, **TUS, **OCTETS, "Upload-Offset": str(sent)})
    assert done.status_code == 204 and "media-id" in done.headers
    assert not [r for r in caplog.records if r.levelname == "ERROR"]
