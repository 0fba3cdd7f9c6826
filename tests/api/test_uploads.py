"""Upload routes: every generated route, every rejected corpus file, and the streaming limits."""

from __future__ import annotations

import json
import socket
import time

import pytest
import requests
from fastapi.testclient import TestClient

from mediahub.entities import KINDS, get_kind
from tests.api.conftest import HOPPER, AppFactory, LiveServer, Tokens, assert_problem, free_port, serving, upload
from tests.support.corpus import CORPUS_DIR, CorpusFile, corpus_images, corpus_videos
from tests.support.sockets import read_head

MB = 1024 * 1024
ROUTES = [
    pytest.param(kind, spec, id=f"{kind.name}-{spec.name}") for kind in KINDS for spec in kind.fields
]
REJECTS = [pytest.param(f, id=f.name) for f in corpus_images("reject") + corpus_videos("reject")]


def _path_and_uploader(kind, spec, tokens: Tokens) -> tuple[str, dict[str, str]]:
    """The route for entity 123 (parent 77) and the natural uploader: the user themself or a grant."""
    path = f"/v1/media/{kind.plural}/123/{spec.route}"
    if kind.parent:
        parent = get_kind(kind.parent)
        path = f"/v1/media/{parent.plural}/77/{kind.plural}/123/{spec.route}"
    if kind.owner_rule == "self":
        return path, tokens.header("123")
    grant = f"{kind.parent}:77/{kind.name}:123" if kind.parent else f"{kind.name}:123"
    return path, tokens.header("USR-1", grants=(grant,))


@pytest.mark.parametrize(("kind", "spec"), ROUTES)
def test_every_generated_route_stores_an_upload(client: TestClient, tokens: Tokens, kind, spec) -> None:
    path, headers = _path_and_uploader(kind, spec, tokens)
    response = upload(client, path, headers, data={"caption": "a caption", "tags": '["one", "two"]'})
    assert response.status_code == 201, response.text
    item = response.json()
    assert (item["entity_type"], item["entity_id"], item["entity_field"]) == (kind.name, "123", spec.name)
    assert (item["width"], item["height"], item["caption"], item["tags"]) == (128, 128, "a caption", ["one", "two"])
    assert item["is_primary"] is (spec.slot == "single")
    assert item["parent_id"] == ("77" if kind.parent else None)


def test_routes_come_from_the_kind_table(app) -> None:
    paths = app.openapi()["paths"]
    upload_paths = {path for path, ops in paths.items() if "post" in ops and path.endswith(
        tuple(f"/{spec.route}" for kind in KINDS for spec in kind.fields))}
    assert len(upload_paths) == sum(len(kind.fields) for kind in KINDS)


@pytest.mark.parametrize("corpus_file", REJECTS)
def test_rejected_corpus_files_get_a_stable_4xx(client: TestClient, tokens: Tokens, corpus_file: CorpusFile) -> None:
    headers = tokens.header("USR-1", grants=("property:123",))  # property gallery takes images and videos
    response = upload(client, "/v1/media/properties/123/photos", headers, file=corpus_file.path)
    assert 400 <= response.status_code < 500, response.text
    body = assert_problem(response, response.status_code)
    assert body["code"] and body["code"].isidentifier()
    assert client.get("/healthz").json() == {"status": "ok"}


def test_video_to_an_image_only_field_is_415(client: TestClient, tokens: Tokens) -> None:
    video = CORPUS_DIR / "video/webm_vp8_tiny_8x8.webm"
    response = upload(client, "/v1/media/users/USR-1/avatar", tokens.header("USR-1"), file=video)
    assert_problem(response, 415, "unsupported_type")


@pytest.mark.parametrize(
    ("entity_id", "status"),
    [
        ("%2e%2e", 422),  # decoded to ".." by the server: not a valid entity id
        ("..", 405),  # the client collapses the dot segment: POST /v1/media/photos matches no upload route
        ("a" * 65, 422),
        ("bad%20id", 422),
        ("x%00y", 422),
    ],
    ids=["encoded-dot-dot", "dot-dot", "too-long", "space", "nul"],
)
def test_bad_entity_ids_are_refused(client: TestClient, tokens: Tokens, entity_id: str, status: int) -> None:
    response = upload(client, f"/v1/media/properties/{entity_id}/photos", tokens.admin())
    assert_problem(response, status)


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        ("../../etc/passwd.jpg", "passwd.jpg"),
        ("C:\\Users\\me\\photo.jpg", "photo.jpg"),
        ("evil\x00name.jpg", "evilname.jpg"),
        ("a" * 10_000 + ".jpg", "a" * 251 + ".jpg"),
    ],
    ids=["dot-dot", "windows-path", "nul", "10kb"],
)
def test_filenames_are_sanitised(client: TestClient, tokens: Tokens, filename: str, expected: str) -> None:
    # Sent raw: HTTP clients would percent-encode the NUL before it reached the server.
    body = _multipart([("file", HOPPER.read_bytes(), filename)])
    response = _post_raw(client, tokens, "/v1/media/users/USR-1/avatar", body)
    assert response.status_code == 201, response.text
    assert response.json()["metadata"]["filename"] == expected


def _small_cap_client(app_factory: AppFactory) -> TestClient:
    return TestClient(app_factory(max_image_size=64 * 1024))


def test_file_over_the_cap_is_413(app_factory: AppFactory, tokens: Tokens) -> None:
    big = CORPUS_DIR / "images/good/jpeg_progressive_peppers.jpg"  # 257 KB > 64 KiB
    with _small_cap_client(app_factory) as client:
        response = upload(client, "/v1/media/users/USR-1/avatar", tokens.header("USR-1"), file=big)
        body = assert_problem(response, 413, "too_large")
        assert body["limit"] == 64 * 1024


def test_declared_length_over_the_cap_is_413_before_the_body(app_factory: AppFactory, tokens: Tokens) -> None:
    """Headers only, no body at all: the answer can only come from the Content-Length check."""
    port = free_port()
    with serving(app_factory(max_image_size=64 * 1024), port), socket.create_connection(("127.0.0.1", port)) as sock:
        auth = tokens.header("USR-1")["Authorization"]
        sock.sendall((
            "POST /v1/media/users/USR-1/avatar HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: {auth}\r\nContent-Type: multipart/form-data; boundary=b\r\n"
            f"Content-Length: {500 * MB}\r\n\r\n"
        ).encode())
        sock.settimeout(30)
        head = sock.recv(65536).decode("latin-1")
    assert head.startswith("HTTP/1.1 413"), head
    assert "too_large" in head


def test_streamed_body_is_cut_at_the_cap(app_factory: AppFactory, tokens: Tokens) -> None:
    """A chunked body with no length: the 413 arrives while the client is still sending."""
    port = free_port()
    chunk = b"\xff" * (64 * 1024)
    sent = 0
    total = 64 * MB
    with serving(app_factory(max_image_size=256 * 1024), port), socket.create_connection(("127.0.0.1", port)) as sock:
        auth = tokens.header("USR-1")["Authorization"]
        sock.sendall((
            "POST /v1/media/users/USR-1/avatar HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: {auth}\r\nContent-Type: multipart/form-data; boundary=b\r\n"
            "Transfer-Encoding: chunked\r\n\r\n"
        ).encode())
        part_head = b'--b\r\nContent-Disposition: form-data; name="file"; filename="x.jpg"\r\n\r\n'
        sock.sendall(b"%x\r\n%s\r\n" % (len(part_head), part_head))
        sock.settimeout(0.0)
        response = b""
        deadline = time.monotonic() + 60
        while sent < total and time.monotonic() < deadline:
            try:
                response += sock.recv(65536)
            except BlockingIOError:
                pass
            except ConnectionError:
                break
            if response:
                break
            try:
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += len(chunk)
            except (BlockingIOError, ConnectionError):
                time.sleep(0.01)
        response = read_head(sock, 30, response)
    assert response.startswith(b"HTTP/1.1 413"), response[:300]
    assert b"connection: close" in response.lower()  # the server hangs up instead of draining the rest
    assert sent < total // 4  # stopped long before the end


def test_body_longer_than_its_content_length_is_refused(client: TestClient, tokens: Tokens) -> None:
    body = b'--b\r\nContent-Disposition: form-data; name="file"; filename="x.jpg"\r\n\r\n' + HOPPER.read_bytes()
    body += b"\r\n--b--\r\n"
    headers = {**tokens.header("USR-1"), "Content-Type": "multipart/form-data; boundary=b",
               "Content-Length": "100"}
    response = client.post("/v1/media/users/USR-1/avatar", headers=headers, content=body)
    assert_problem(response, 400, "content_length_mismatch")


def _multipart(parts: list[tuple[str, bytes, str | None]]) -> bytes:
    out = b""
    for name, value, filename in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += f"--b\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + value + b"\r\n"
    return out + b"--b--\r\n"


def _post_raw(client: TestClient, tokens: Tokens, path: str, body: bytes):
    headers = {**tokens.admin(), "Content-Type": "multipart/form-data; boundary=b"}
    return client.post(path, headers=headers, content=body)


@pytest.mark.parametrize(
    ("parts", "status", "code"),
    [
        ([("tags", b"x", None)] * 40, 413, "too_many_parts"),
        ([("caption", b"x" * (65 * 1024), None)], 413, "field_too_large"),
        ([("file", b"a", "a.jpg"), ("file", b"b", "b.jpg")], 413, "too_many_files"),
        ([("photo", HOPPER.read_bytes(), "a.jpg")], 422, "unexpected_file_field"),
        ([("caption", b"no file", None)], 422, "missing_file"),
        ([("file", b"", "empty.jpg")], 422, "empty_file"),
        ([("file", HOPPER.read_bytes(), "a.jpg"), ("is_primary", b"maybe", None)], 422, "validation_error"),
        ([("file", HOPPER.read_bytes(), "a.jpg"), ("tags", b"[1, 2]", None)], 422, "validation_error"),
        ([("file", HOPPER.read_bytes(), "a.jpg"), ("caption", b"\xff\xfe", None)], 422, "invalid_encoding"),
    ],
    ids=["too-many-parts", "big-field", "two-files", "wrong-name", "no-file", "empty-file", "bad-bool",
         "bad-tags", "not-utf8"],
)
def test_form_limits(client: TestClient, tokens: Tokens, parts, status: int, code: str) -> None:
    response = _post_raw(client, tokens, "/v1/media/properties/123/photos", _multipart(parts))
    assert_problem(response, status, code)


@pytest.mark.parametrize(
    ("content_type", "body", "status", "code"),
    [
        ("application/json", b"{}", 415, "not_multipart"),
        ("multipart/form-data", b"--b--", 400, "malformed_multipart"),
        ("multipart/form-data; boundary=b", b"garbage without boundaries", 400, "malformed_multipart"),
        ("multipart/form-data; boundary=b", b'--b\r\nContent-Disposition: form-data; name="file"; '
                                            b'filename="a.jpg"\r\n\r\nunfinished', 400, "malformed_multipart"),
    ],
    ids=["json", "no-boundary", "garbage", "truncated"],
)
def test_malformed_bodies_are_400_or_415(client: TestClient, tokens: Tokens, content_type: str, body: bytes,
                                         status: int, code: str) -> None:
    headers = {**tokens.admin(), "Content-Type": content_type}
    response = client.post("/v1/media/properties/123/photos", headers=headers, content=body)
    assert_problem(response, status, code)


def test_batch_keeps_good_files_when_one_is_bad(client: TestClient, tokens: Tokens) -> None:
    files = [
        ("files", ("good.jpg", HOPPER.read_bytes(), "image/jpeg")),
        ("files", ("bad.pdf", (CORPUS_DIR / "images/bad/not_image_pdf.pdf").read_bytes(), "application/pdf")),
    ]
    data = {"entity_type": "property", "entity_id": "123", "entity_field": "gallery"}
    response = client.post("/v1/media/batch/upload", headers=tokens.admin(), files=files, data=data)
    assert response.status_code == 207, response.text  # multi-status: some stored, some not
    body = response.json()
    assert (body["stored"], body["failed"]) == (1, 1)
    assert body["results"][0]["ok"] and body["results"][0]["item"]["entity_id"] == "123"
    assert body["results"][1] == {"index": 1, "filename": "bad.pdf", "ok": False, "item": None,
                                  "error": body["results"][1]["error"]}
    assert body["results"][1]["error"]["code"] == "unsupported_type"


def test_batch_over_max_files_is_413(app_factory: AppFactory, tokens: Tokens) -> None:
    with TestClient(app_factory(max_batch_files=2)) as client:
        files = [("files", (f"{i}.jpg", HOPPER.read_bytes(), "image/jpeg")) for i in range(3)]
        data = {"entity_type": "property", "entity_id": "123", "entity_field": "gallery"}
        response = client.post("/v1/media/batch/upload", headers=tokens.admin(), files=files, data=data)
        assert_problem(response, 413, "too_many_files")


def test_batch_needs_upload_rights_on_its_target(client: TestClient, tokens: Tokens) -> None:
    data = {"entity_type": "property", "entity_id": "123", "entity_field": "gallery"}
    files = [("files", ("a.jpg", HOPPER.read_bytes(), "image/jpeg"))]
    response = client.post("/v1/media/batch/upload", headers=tokens.user(), files=files, data=data)
    assert_problem(response, 403, "upload_forbidden")


def test_upload_rate_limit_answers_429_with_retry_after(app_factory: AppFactory, tokens: Tokens) -> None:
    with TestClient(app_factory(upload_rate_limit=2)) as client:
        headers = tokens.header("USR-1")
        statuses = [upload(client, "/v1/media/users/USR-1/cover", headers).status_code for _ in range(3)]
        assert statuses[:2] == [201, 201]
        response = upload(client, "/v1/media/users/USR-1/cover", headers)
        body = assert_problem(response, 429, "rate_limited")
        assert int(response.headers["retry-after"]) >= 1 and body["retry_after"] >= 1
        # Someone else is not limited by USR-1's uploads.
        assert upload(client, "/v1/media/users/USR-2/cover", tokens.header("USR-2")).status_code == 201


def test_upload_results_are_counted_in_metrics(app_factory, tokens: Tokens) -> None:
    with TestClient(app_factory(metrics_token="scrape-token-for-the-tests")) as client:
        upload(client, "/v1/media/users/USR-1/avatar", tokens.header("USR-1"))
        empty = CORPUS_DIR / "images/bad/zero_bytes.jpg"
        upload(client, "/v1/media/users/USR-1/avatar", tokens.header("USR-1"), file=empty)
        text = client.get("/metrics", headers={"Authorization": "Bearer scrape-token-for-the-tests"}).text
    assert 'mediahub_uploads_total{result="ok"} 1.0' in text
    assert 'mediahub_uploads_total{result="empty_file"} 1.0' in text
    assert 'route="/v1/media/users/{user_id}/avatar",status="201"' in text


def test_openapi_documents_every_route(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            assert operation.get("summary"), (method, path)
    assert client.get("/docs").status_code == 200
    assert json.dumps(spec).count("multipart/form-data") >= sum(len(k.fields) for k in KINDS) + 1


def test_health_answers_while_an_upload_is_in_flight(live_server: LiveServer, tokens: Tokens) -> None:
    """Half an upload sent and the client stalled: the server still answers /healthz meanwhile."""
    head = b'--b\r\nContent-Disposition: form-data; name="file"; filename="x.jpg"\r\n\r\n'
    body = head + HOPPER.read_bytes() + b"\r\n--b--\r\n"
    with socket.create_connection(("127.0.0.1", live_server.port)) as sock:
        auth = tokens.header("USR-1")["Authorization"]
        sock.sendall((
            "POST /v1/media/users/USR-1/avatar HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: {auth}\r\nContent-Type: multipart/form-data; boundary=b\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body[:len(body) // 2])
        assert requests.get(f"{live_server.url}/healthz", timeout=10).json() == {"status": "ok"}
        sock.sendall(body[len(body) // 2:])
        sock.settimeout(60)
        response = b""
        while b"\r\n\r\n" not in response:
            response += sock.recv(65536)
    assert response.startswith(b"HTTP/1.1 201"), response[:200]


BATCH_TARGET = [("entity_type", b"property", None), ("entity_id", b"123", None), ("entity_field", b"gallery", None)]
PDF = CORPUS_DIR / "images/bad/not_image_pdf.pdf"


def _batch_post(client: TestClient, headers: dict[str, str], parts: list[tuple[str, bytes, str | None]]):
    return client.post("/v1/media/batch/upload", content=_multipart(parts),
                       headers={**headers, "Content-Type": "multipart/form-data; boundary=b"})


def test_batch_status_says_what_was_stored(client: TestClient, tokens: Tokens) -> None:
    """201 all stored, 207 some, 422 `batch_failed` none; each file's result in the body every time."""
    good, bad = ("files", HOPPER.read_bytes(), "good.jpg"), ("files", PDF.read_bytes(), "bad.pdf")
    all_stored = _batch_post(client, tokens.admin(), [*BATCH_TARGET, good, good])
    assert all_stored.status_code == 201 and all_stored.json()["stored"] == 2
    mixed = _batch_post(client, tokens.admin(), [*BATCH_TARGET, good, bad])
    assert mixed.status_code == 207 and (mixed.json()["stored"], mixed.json()["failed"]) == (1, 1)
    none = _batch_post(client, tokens.admin(), [*BATCH_TARGET, bad, bad])
    body = assert_problem(none, 422, "batch_failed")
    assert (body["stored"], body["failed"]) == (0, 2)
    assert [(r["index"], r["ok"], r["error"]["code"]) for r in body["results"]] == [
        (0, False, "unsupported_type"), (1, False, "unsupported_type")]
    listed = client.get("/v1/media/entity/property/123", headers=tokens.admin()).json()
    assert listed["total"] == 3  # the two of the first batch and the good one of the mixed batch


def test_openapi_documents_the_batch_statuses(client: TestClient) -> None:
    responses = client.get("/openapi.json").json()["paths"]["/v1/media/batch/upload"]["post"]["responses"]
    assert {"201", "207", "422", "429"} <= set(responses) and "200" not in responses
    assert "#/components/schemas/BatchFailedProblem" in json.dumps(responses["422"])


@pytest.mark.parametrize("caller", ["admin", "stranger"])
def test_batch_file_before_its_target_fields_is_refused(client: TestClient, tokens: Tokens, caller: str) -> None:
    """The target decides who may upload: a file part ahead of it would have to be spooled unauthorised."""
    headers = tokens.admin() if caller == "admin" else tokens.user()
    response = _batch_post(client, headers, [("files", HOPPER.read_bytes(), "a.jpg"), *BATCH_TARGET])
    body = assert_problem(response, 422, "target_fields_first")
    assert body["fields"] == ["entity_type", "entity_id", "entity_field"]
    response = _batch_post(client, headers, [("entity_type", b"property", None),
                                             ("files", HOPPER.read_bytes(), "a.jpg"), *BATCH_TARGET[1:]])
    assert_problem(response, 422, "target_fields_first")


def _stalled_batch(port: int, headers: dict[str, str], parts: list[tuple[str, bytes, str | None]],
                   declared: int) -> socket.socket:
    """A batch whose head and first parts were sent, the rest (up to `declared` bytes) never."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    opening = _multipart(parts).removesuffix(b"--b--\r\n")
    sock.sendall((
        "POST /v1/media/batch/upload HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: {headers['Authorization']}\r\nContent-Type: multipart/form-data; boundary=b\r\n"
        f"Content-Length: {declared}\r\n\r\n"
    ).encode() + opening)
    return sock


def test_an_unauthorised_batch_is_refused_before_its_files_are_read(live_server: LiveServer, tokens: Tokens,
                                                                     tmp_path) -> None:
    """Half a file sent, 100 MB declared: the refusal comes at the first file part, nothing is spooled."""
    file_head = ("files", HOPPER.read_bytes()[:3000], "a.jpg")
    for parts, expected in [([*BATCH_TARGET, file_head], b"upload_forbidden"),
                            ([file_head, *BATCH_TARGET], b"target_fields_first")]:
        with _stalled_batch(live_server.port, tokens.user(), parts, 100 * MB) as sock:
            response = read_head(sock, 20)
        assert expected in response and b"connection: close" in response.lower(), response[:300]
    spool = tmp_path / "spool"
    assert not spool.exists() or not any(spool.iterdir())


def test_batch_bytes_are_capped(app_factory: AppFactory, tokens: Tokens) -> None:
    """Two files each under the image cap, together over MAX_BATCH_BYTES (plus the form's allowance)."""
    peppers = ("files", (CORPUS_DIR / "images/good/jpeg_progressive_peppers.jpg").read_bytes(), "p.jpg")  # 257 KB
    with TestClient(app_factory(max_batch_bytes=64 * 1024)) as client:
        assert _batch_post(client, tokens.admin(), [*BATCH_TARGET, peppers]).status_code == 201
        response = _batch_post(client, tokens.admin(), [*BATCH_TARGET, peppers, peppers])
        body = assert_problem(response, 413, "too_large")
        assert 64 * 1024 < body["limit"] < 2 * len(peppers[1])
        assert client.get("/v1/media/entity/property/123", headers=tokens.admin()).json()["total"] == 1


def test_concurrent_batches_per_principal_are_capped(app_factory: AppFactory, tokens: Tokens) -> None:
    port = free_port()
    app = app_factory(max_concurrent_batches=1, public_base_url=f"http://127.0.0.1:{port}")
    first = [*BATCH_TARGET, ("files", HOPPER.read_bytes()[:1000], "a.jpg")]
    full = _multipart([*BATCH_TARGET, ("files", HOPPER.read_bytes(), "b.jpg")])
    owner = tokens.header("USR-9", grants=("property:123",))
    with serving(app, port) as server, _stalled_batch(port, owner, first, 10 * MB) as held:
        time.sleep(0.5)  # the held batch has reached the route
        headers = {"Content-Type": "multipart/form-data; boundary=b"}
        second = requests.post(f"{server.url}/v1/media/batch/upload", data=full, timeout=30,
                               headers={**owner, **headers})
        assert_problem(second, 429, "too_many_batches")
        assert int(second.headers["retry-after"]) >= 1
        other = requests.post(f"{server.url}/v1/media/batch/upload", data=full, timeout=30,
                              headers={**tokens.admin(), **headers})
        assert other.status_code == 201, other.text  # another principal is not held up
        held.close()
        time.sleep(0.5)  # the held batch ends (client gone) and frees its slot
        again = requests.post(f"{server.url}/v1/media/batch/upload", data=full, timeout=30,
                              headers={**owner, **headers})
        assert again.status_code == 201, again.text


def test_each_file_of_a_batch_counts_against_the_rate_limit(app_factory: AppFactory, tokens: Tokens) -> None:
    with TestClient(app_factory(upload_rate_limit=3)) as client:
        good = ("files", HOPPER.read_bytes(), "a.jpg")
        assert _batch_post(client, tokens.admin(), [*BATCH_TARGET, good, good]).status_code == 201
        assert upload(client, "/v1/media/properties/123/photos", tokens.admin()).status_code == 201
        assert_problem(upload(client, "/v1/media/properties/123/photos", tokens.admin()), 429, "rate_limited")
        # A batch larger than what is left of the window is refused whole, before its files are read.
        body = assert_problem(_batch_post(client, tokens.header("USR-9", roles=("user", "admin")),
                                          [*BATCH_TARGET, good, good, good, good]), 429, "rate_limited")
        assert body["limit"] == 3
        assert client.get("/v1/media/entity/property/123", headers=tokens.admin()).json()["total"] == 3
