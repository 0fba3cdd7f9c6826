"""The upload transports as an outside attacker sends to them: tus at /v1/media/tus/ and the direct-to-S3
endpoints, with headers, bodies, ids and timings no client library sends. Every refusal is a 4xx
problem with a stable code, and a refused or interrupted request leaves nothing behind that holds an
upload slot, bytes or a connection longer than the rules say."""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
from fastapi.testclient import TestClient

from mediahub.api.serving import uvicorn_options
from mediahub.db.models import utcnow
from mediahub.db.repositories import MediaRepository
from mediahub.db.repositories.uploads import RECEIVING, UploadRepository
from mediahub.media.upload_sweep import STRAY_GRACE, sweep_uploads
from tests.api.conftest import (
    AppFactory,
    LiveServer,
    Tokens,
    assert_problem,
    free_port,
    make_settings,
    serving,
)
from tests.api.test_tus import AVATAR, HOPPER, OCTETS, PHOTOS, TUS, create, metadata, patch
from tests.support.faults import Passthrough
from tests.support.sockets import read_head

MB = 1024 * 1024


@pytest.fixture
def db_client(app_factory: AppFactory, migrated_database_url: str) -> Iterator[TestClient]:
    """A TestClient on each database in turn."""
    with TestClient(app_factory(database_url=migrated_database_url)) as client:
        yield client


def _open_uploads(client: TestClient, sub: str) -> int:
    with client.app.state.runtime.database.session() as session:
        return UploadRepository(session).count_open(sub)


def _staged_files(client: TestClient) -> list[Path]:
    root = client.app.state.runtime.tus.staging.root
    return [path for path in root.rglob("*") if path.is_file()]


# Header values: never a 500


def _raw_request(server: LiveServer, method: str, path: str, headers: list[tuple[str, bytes | str]],
                 body: bytes = b"") -> bytes:
    """The answer's status line: headers go out as the bytes given (an HTTP client would refuse some)."""
    head = [f"{method} {path} HTTP/1.1".encode(), b"Host: 127.0.0.1", b"Connection: close",
            f"Content-Length: {len(body)}".encode()]
    head += [name.encode() + b": " + (value if isinstance(value, bytes) else value.encode()) for name, value in headers]
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"\r\n".join(head) + b"\r\n\r\n" + body)
        return read_head(sock, 10).split(b"\r\n", 1)[0]


@pytest.mark.parametrize("value", ["\u00b2", "1\u00b9", "\u00b3\u00b3"], ids=["two", "one-one", "three-three"])
def test_digits_that_are_not_ascii_are_a_bad_header(live_server: LiveServer, tokens: Tokens, value: str) -> None:
    """Latin-1 has superscript digits: str.isdigit() takes them, int() does not."""
    owner = [*tokens.header("USR-1").items(), *TUS.items()]
    raw = value.encode("latin-1")
    with httpx.Client(base_url=live_server.url, trust_env=False) as http:
        url = httpx.URL(create(http, dict(owner), 100).headers["location"]).path
        deferred = httpx.URL(create(http, dict(owner), None).headers["location"]).path
        answers = [
            _raw_request(live_server, "POST", "/v1/media/tus/",
                         [*owner, ("Upload-Metadata", metadata(**AVATAR)), ("Upload-Length", raw)]),
            _raw_request(live_server, "PATCH", url, [*owner, *OCTETS.items(), ("Upload-Offset", raw)], b"x"),
            _raw_request(live_server, "PATCH", deferred,
                         [*owner, *OCTETS.items(), ("Upload-Offset", "0"), ("Upload-Length", raw)]),
        ]
        assert answers == [b"HTTP/1.1 400 Bad Request"] * 3
        assert http.head(url, headers=dict(owner)).headers["upload-offset"] == "0"


# One PATCH longer than a checkpoint


def test_one_patch_carrying_the_whole_declared_length_is_taken(live_server: LiveServer, tokens: Tokens) -> None:
    """A client with no chunk size (tus-js-client's default) sends the whole file in one PATCH, which
    arrives in many pieces; the bytes recorded at each 8 MiB checkpoint count once against the length."""
    length, admin = 20 * MB, tokens.admin()

    def body() -> Iterator[bytes]:
        for _ in range(length // MB):
            yield b"\0" * MB

    with httpx.Client(base_url=live_server.url, trust_env=False, timeout=60) as http:
        declared = create(http, admin, length, PHOTOS).headers["location"]
        response = http.patch(declared, headers={**admin, **TUS, **OCTETS, "Upload-Offset": "0"}, content=body())
        assert_problem(response, 415, "unsupported_type")  # every byte arrived: the ingest sniffed the file
        deferred = create(http, admin, None, PHOTOS).headers["location"]
        response = http.patch(deferred, headers={**admin, **TUS, **OCTETS, "Upload-Offset": "0"}, content=body())
        assert response.status_code == 204, response.text
        assert response.headers["upload-offset"] == str(length)


# Creation with upload: an error answer leaves no upload behind


@pytest.mark.parametrize("extra, body, status, code", [
    ({"Content-Type": "text/plain"}, b"x" * 10, 415, "tus_content_type"),
    ({**OCTETS, "Upload-Checksum": "crc32 AAAA"}, b"x" * 10, 400, "unsupported_checksum"),
    ({**OCTETS}, b"x" * 200, 413, "beyond_length"),
    ({**OCTETS, "Upload-Checksum": "sha1 MDAwMDAwMDAwMDAwMDAwMDAwMDA="}, b"x" * 10, 460, "checksum_mismatch"),
], ids=["content-type", "checksum-algorithm", "longer-than-declared", "checksum-mismatch"])
def test_a_refused_creation_with_upload_leaves_no_upload(client: TestClient, tokens: Tokens, extra: dict[str, str],
                                                          body: bytes, status: int, code: str) -> None:
    """The client never learns the Location of a creation answered with an error: an upload left behind
    could never be continued, and would hold one of UPLOAD_MAX_OPEN slots until it expires."""
    owner = tokens.header("USR-1")
    response = client.post("/v1/media/tus/", headers={**owner, **TUS, "Upload-Length": "100",
                                                      "Upload-Metadata": metadata(**AVATAR), **extra}, content=body)
    assert_problem(response, status, code)
    assert "location" not in response.headers
    assert _open_uploads(client, "USR-1") == 0
    assert _staged_files(client) == []


# Concatenation: each partial upload is joined once


def _partials(client: TestClient, headers: dict[str, str], data: bytes, count: int) -> list[str]:
    size = -(-len(data) // count)
    urls = []
    for offset in range(0, len(data), size):
        piece = data[offset:offset + size]
        url = client.post("/v1/media/tus/", headers={**headers, **TUS, "Upload-Concat": "partial",
                                                       "Upload-Length": str(len(piece))}).headers["location"]
        assert patch(client, url, headers, 0, piece).status_code == 204
        urls.append(url)
    return urls


def _final(client: TestClient, headers: dict[str, str], parts: list[str], fields: dict[str, Any]) -> Any:
    return client.post("/v1/media/tus/", headers={**headers, **TUS, "Upload-Concat": "final;" + " ".join(parts),
                                                  "Upload-Metadata": metadata(**fields)})


class GatedStaging(Passthrough):
    """The real staging whose first `materialise` waits until the test opens the gate."""

    def __init__(self, inner: Any) -> None:
        super().__init__(inner)
        self.entered, self.gate = threading.Event(), threading.Event()

    def materialise(self, *args: Any) -> Any:
        if not self.entered.is_set():
            self.entered.set()
            assert self.gate.wait(30)
        return self.inner.materialise(*args)


def test_racing_final_uploads_of_the_same_partials_make_one_item(db_client: TestClient, tokens: Tokens) -> None:
    """A retried final POST (a proxy's, or a client's that timed out) arrives while the first is ingesting:
    it must neither join the same partial uploads into a second item nor break the first."""
    client, admin = db_client, tokens.admin()
    parts = _partials(client, admin, HOPPER.read_bytes(), 2)
    fields = {**PHOTOS, "allow_duplicate": "true"}  # a second item would not be refused as a duplicate
    tus = client.app.state.runtime.tus
    tus.staging = gated = GatedStaging(tus.staging)
    answers: dict[str, Any] = {}
    first = threading.Thread(target=lambda: answers.update(first=_final(client, admin, parts, fields)))
    first.start()
    try:
        assert gated.entered.wait(30), "the first final upload never reached its partial uploads' bytes"
        assert_problem(_final(client, admin, parts, fields), 423, "upload_locked")
    finally:
        gated.gate.set()
        first.join(30)
    assert answers["first"].status_code == 201, answers["first"].text
    again = _final(client, admin, parts, fields)
    assert again.status_code == 201 and again.headers["media-id"] == answers["first"].headers["media-id"]
    assert client.get("/v1/media/entity/property/123", headers=admin).json()["total"] == 1


def test_a_final_upload_names_each_partial_upload_once(client: TestClient, tokens: Tokens) -> None:
    """Listing one partial upload many times would make a file of the cap's size out of a few bytes sent."""
    owner = tokens.header("USR-1")
    [part] = _partials(client, owner, HOPPER.read_bytes(), 1)
    assert_problem(_final(client, owner, [part, part], AVATAR), 422, "invalid_concat")
    assert client.head(part, headers={**owner, **TUS}).headers["upload-offset"] == str(HOPPER.stat().st_size)
    assert _final(client, owner, [part], AVATAR).status_code == 201


# A trickling body


def test_a_trickling_patch_taken_over_by_a_newer_one_stops_at_its_next_byte(app_factory: AppFactory,
                                                                            tokens: Tokens) -> None:
    """One byte every few seconds keeps a connection open under any per-read timeout. Once the client's newer
    PATCH has taken the upload over, the old request answers 423 at its next byte instead of holding its
    connection, its lease thread and its open file until a megabyte or the end of its body arrives; else
    every take-over would add one such request for as long as the attacker cares to trickle."""
    owner = tokens.header("USR-1")
    with serving(app_factory(upload_lease_seconds=1), free_port()) as server, \
            httpx.Client(base_url=server.url, trust_env=False) as http:
        url = httpx.URL(create(http, owner, 1000).headers["location"]).path
        head = [f"PATCH {url} HTTP/1.1", "Host: 127.0.0.1", "Content-Length: 100", "Upload-Offset: 0",
                *(f"{name}: {value}" for name, value in {**owner, **TUS, **OCTETS}.items())]
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as trickle:
            trickle.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + b"x")
            time.sleep(2.5)  # quiet: its lease is no longer renewed and runs out
            newer = http.patch(url, headers={**owner, **TUS, **OCTETS, "Upload-Offset": "0"}, content=b"y" * 10)
            assert newer.status_code == 204, newer.text
            trickle.sendall(b"x")
            assert read_head(trickle, 5).startswith(b"HTTP/1.1 423 ")
        assert http.head(url, headers={**owner, **TUS}).headers["upload-offset"] == "10"


# Partial uploads: no target at creation, so no right to check and no kind's cap


def _partial(client: TestClient, headers: dict[str, str], length: int | None, **fields: Any) -> Any:
    sizes = {"Upload-Length": str(length)} if length is not None else {"Upload-Defer-Length": "1"}
    extra = {"Upload-Metadata": metadata(**fields)} if fields else {}
    return client.post("/v1/media/tus/", headers={**headers, **TUS, "Upload-Concat": "partial", **sizes, **extra})


def test_partial_uploads_without_a_target_hold_one_files_bytes_at_most(db_client: TestClient, tokens: Tokens) -> None:
    """Anyone with a token may start a partial upload, which names no target: were each capped alone, a caller
    with no right to upload anywhere could hold UPLOAD_MAX_OPEN times the largest cap (10 GB by default) for a
    day. Together they hold one file of any kind; a partial upload that names its target is checked as any
    upload is (tus-js-client's metadataForPartialUploads)."""
    client, nobody = db_client, tokens.header("USR-NOBODY")
    cap = client.app.state.runtime.tus.max_size
    first = _partial(client, nobody, cap // 2 + 1)
    assert first.status_code == 201, first.text
    assert_problem(_partial(client, nobody, cap // 2), 413, "partial_bytes_limit")
    assert_problem(_partial(client, nobody, None), 400, "missing_length")
    assert _partial(client, tokens.header("USR-OTHER"), cap // 2).status_code == 201  # each caller's own
    assert_problem(_partial(client, nobody, 10, **AVATAR), 403, "upload_forbidden")
    own = {**AVATAR, "entity_id": "USR-NOBODY"}
    assert_problem(_partial(client, nobody, client.app.state.runtime.settings.max_image_size + 1, **own), 413)
    targeted = _partial(client, nobody, 1000, **own)
    assert targeted.status_code == 201, targeted.text
    assert client.delete(first.headers["location"], headers={**nobody, **TUS}).status_code == 204
    assert _partial(client, nobody, cap // 2).status_code == 201


# Direct uploads: what a caller names reaches the database


@pytest.fixture
def s3_db_client(app_factory: AppFactory, s3_server: str, migrated_database_url: str) -> Iterator[TestClient]:
    """Direct uploads (moto's S3) on each database in turn."""
    app = app_factory(database_url=migrated_database_url, storage_type="s3", s3_endpoint_url=s3_server,
                      aws_access_key_id="testing", aws_secret_access_key="testing",
                      s3_bucket_name=f"attack-{uuid.uuid4().hex[:12]}")
    with TestClient(app) as client:
        client.app.state.runtime.storage.check()
        yield client


@pytest.mark.s3
@pytest.mark.parametrize("bad", ["\x00", "\x1b"], ids=["nul", "escape"])
def test_a_key_with_control_characters_is_refused_on_every_database(s3_db_client: TestClient, tokens: Tokens,
                                                                     bad: str) -> None:
    """`key` is the caller's text on every call after the creation and is looked up in the uploads table:
    PostgreSQL refuses a NUL in it (a 500 there), so it is refused as text everywhere is."""
    client, owner = s3_db_client, tokens.header("USR-1", grants=("property:123",))
    started = client.post("/v1/media/s3/multipart", headers=owner,
                          json={"metadata": {"entity_type": "property", "entity_id": "123", "entity_field": "photos"}})
    assert started.status_code == 201, started.text
    key, upload_id = started.json()["key"], started.json()["uploadId"]
    params = {"key": f"{key}{bad}"}
    calls = [
        client.get(f"/v1/media/s3/multipart/{upload_id}/1", params=params, headers=owner),
        client.get(f"/v1/media/s3/multipart/{upload_id}/batch", params={**params, "partNumbers": "1"}, headers=owner),
        client.get(f"/v1/media/s3/multipart/{upload_id}", params=params, headers=owner),
        client.post(f"/v1/media/s3/multipart/{upload_id}/complete", params=params, headers=owner,
                    json={"parts": [{"PartNumber": 1, "ETag": "x"}]}),
        client.delete(f"/v1/media/s3/multipart/{upload_id}", params=params, headers=owner),
        client.post("/v1/media/s3/params/complete", params=params, headers=owner),
    ]
    assert [(call.status_code, call.json()["code"]) for call in calls] == [(422, "control_character")] * len(calls)
    with client.app.state.runtime.database.session() as session:  # (moto dates every multipart upload 2010, so
        row = UploadRepository(session).get(key.rsplit("/", 1)[-1])  # the startup sweep may abort it: not asked)
        assert row is not None and row.state == RECEIVING and row.staging["upload_id"] == upload_id


@pytest.mark.s3
def test_a_form_sent_again_after_its_upload_finished_is_swept_soon(s3_db_client: TestClient, tokens: Tokens) -> None:
    """A presigned POST stays valid for DIRECT_UPLOAD_URL_SECONDS whatever became of its upload: sent again
    after its completion (which frees its open-upload slot), it stores up to the byte cap at a key whose row
    lives on (to answer the outcome) for a day. Bytes at the key of a finished upload are strays: swept once
    older than the sweeper's grace, not when the row expires; the outcome is still answered."""
    client, owner = s3_db_client, tokens.header("USR-1", grants=("property:123",))
    query = {"filename": "a.jpg", **{f"metadata[{name}]": value for name, value in
                                     {"entity_type": "property", "entity_id": "123", "entity_field": "photos"}.items()}}
    form = client.get("/v1/media/s3/params", params=query, headers=owner).json()
    with requests.Session() as bucket:
        bucket.trust_env = False
        assert bucket.post(form["url"], data=form["fields"], files={"file": ("a.jpg", b"not an image")}).ok
        assert_problem(client.post("/v1/media/s3/params/complete", params={"key": form["key"]}, headers=owner),
                       415, "unsupported_type")
        assert _open_uploads(client, "USR-1") == 0
        assert bucket.post(form["url"], data=form["fields"], files={"file": ("a.jpg", b"x" * MB)}).ok  # again
    runtime = client.app.state.runtime
    swept = sweep_uploads(runtime.database, runtime.staging, utcnow() + 2 * STRAY_GRACE, STRAY_GRACE)
    assert swept.strays == 1 and not runtime.storage.exists(form["key"])
    assert_problem(client.post("/v1/media/s3/params/complete", params={"key": form["key"]}, headers=owner),
                   415, "unsupported_type")


# Many tiny PATCHes


class S3Traffic:
    """The bytes a boto3 client sends to S3 (request bodies) and reads from it (objects), while counting."""

    def __init__(self, client: Any) -> None:
        self.client, self.bytes = client, 0

    def _sent(self, request: Any, **_: Any) -> None:
        self.bytes += int(request.headers.get("Content-Length", 0))

    def _read(self, parsed: dict[str, Any], **_: Any) -> None:
        self.bytes += int(parsed.get("ContentLength", 0))

    def __enter__(self) -> S3Traffic:
        self.client.meta.events.register("before-send.s3", self._sent)
        self.client.meta.events.register("after-call.s3.GetObject", self._read)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.client.meta.events.unregister("before-send.s3", self._sent)
        self.client.meta.events.unregister("after-call.s3.GetObject", self._read)


@pytest.mark.s3
def test_s3_tiny_patches_cost_the_store_what_they_carry(app_factory: AppFactory, s3_server: str,
                                                         tokens: Tokens) -> None:
    """Each PATCH must leave its bytes persisted. Were the bytes after the last full part kept as one object,
    every PATCH would read it back and write it again whole: one byte sent would move up to two parts'
    worth (16 MiB by default) between the API and the bucket, and a client of small chunks pays that too."""
    app = app_factory(storage_type="s3", s3_endpoint_url=s3_server, aws_access_key_id="testing",
                      aws_secret_access_key="testing", s3_bucket_name=f"attack-{uuid.uuid4().hex[:12]}",
                      upload_part_size=5 * MB)
    owner, data = tokens.header("USR-1"), HOPPER.read_bytes()
    with TestClient(app) as client:
        runtime = client.app.state.runtime
        runtime.storage.check()
        part = 5 * MB
        padded = data + b"\0" * (2 * part)
        url = create(client, owner, len(padded)).headers["location"]
        start = 2 * part - 100  # a part, and a tail of 5 MiB - 100 bytes
        assert patch(client, url, owner, 0, padded[:start]).status_code == 204
        with S3Traffic(runtime.storage.client) as traffic:
            for offset in range(start, start + 64):
                assert patch(client, url, owner, offset, padded[offset:offset + 1]).status_code == 204
        assert traffic.bytes < 64 * 64 * 1024, f"{traffic.bytes} bytes to and from S3 for 64 one-byte PATCHes"
        response = patch(client, url, owner, start + 64, padded[start + 64:])
        assert response.status_code == 204, response.text
        with runtime.database.session() as session:
            item = MediaRepository(session).get(int(response.headers["media-id"]))
            assert item.sha256 == hashlib.sha256(padded).hexdigest()  # JPEG readers skip the trailing zeros


# HTTP the parser refuses


@pytest.mark.parametrize("head, body", [
    ("Content-Length: -5", b"x"),
    ("Content-Length: 99999999999999999999", b"x"),
    ("Content-Length: 5\r\nContent-Length: 6", b"xxxxx"),
    ("Transfer-Encoding: chunked\r\nContent-Length: 3", b"3\r\nabc\r\n0\r\n\r\n"),
    ("Transfer-Encoding: chunked", b"zz\r\nabc\r\n0\r\n\r\n"),
], ids=["negative-length", "huge-length", "two-lengths", "chunked-and-length", "bad-chunk-size"])
def test_framing_the_parser_refuses_is_a_problem(app_factory: AppFactory, tokens: Tokens, tmp_path: Path,
                                                 head: str, body: bytes) -> None:
    """uvicorn answers what its parser cannot read (lengths that lie or disagree, chunk sizes that are not
    hex) itself, as text; the server's protocol answers it as a problem with a stable code like its other
    refusals. The upload the PATCH named is unchanged."""
    owner = tokens.header("USR-1")
    with serving(app_factory(), free_port(), **uvicorn_options(make_settings(tmp_path))) as server, \
            httpx.Client(base_url=server.url, trust_env=False) as http:
        url = httpx.URL(create(http, owner, 100).headers["location"]).path
        lines = [f"PATCH {url} HTTP/1.1", "Host: 127.0.0.1", "Upload-Offset: 0", head,
                 *(f"{name}: {value}" for name, value in {**owner, **TUS, **OCTETS}.items())]
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
            answer = read_head(sock, 5)
            while b"}" not in answer.partition(b"\r\n\r\n")[2]:
                more = sock.recv(65536)
                if not more:
                    break
                answer += more
        status, _, rest = answer.partition(b"\r\n")
        assert status == b"HTTP/1.1 400 Bad Request", answer
        headers, _, problem = rest.partition(b"\r\n\r\n")
        assert b"content-type: application/problem+json" in headers.lower(), answer
        assert json.loads(problem)["code"] == "malformed_request"
        assert http.head(url, headers={**owner, **TUS}).headers["upload-offset"] == "0"
