"""tuspy and tus-js-client, unmodified, upload to a real `mediahub serve` at /v1/media/tus/.

Each scenario runs with both clients through their own code paths: tuspy in this process,
tus-js-client in Node (tus_upload.mjs). Where a client lacks a feature (tuspy: termination;
tus-js-client: checksums) the test says how it stands in. One server per module (SQLite, local
disk), one more for the kill -9 scenario and one on moto's S3 for tus on the S3 staging.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from sys import maxsize
from typing import Any

import pytest
import requests
from tusclient.client import TusClient
from tusclient.exceptions import TusCommunicationError
from tusclient.storage.filestorage import FileStorage
from tusclient.uploader import Uploader

from tests.clients.conftest import GALLERY, TUS, Live, Node, live_server, sha256_of, unique
from tests.reliability.harness import admin, bearer, wait_until
from tests.support.corpus import CORPUS_DIR, corpus_files

IMAGE = CORPUS_DIR / "images/good/jpeg_hopper.jpg"
OTHER_IMAGE = CORPUS_DIR / "images/good/png_peppers_rgba.png"
VIDEO = CORPUS_DIR / "video/mp4_h264_mp3_chaplin_640x360.mp4"  # 761 KB, 9.6 s
KIB = 1024
MIB = 1024 * KIB
CHUNK = 128 * KIB
SLOW_CHUNK = 64 * KIB  # the kill -9 scenarios: a dozen PATCHes for the video, the kill after three
RETRY_DELAYS_MS = [500, 1000, 1000, 2000, 2000, 3000, 3000]  # tus-js-client's retries outlast a restart
CLIENTS = ("tuspy", "tus-js-client")


def photos(entity: str, path: Path, **fields: str) -> dict[str, str]:
    return {"entity_type": "property", "entity_id": entity, "entity_field": "photos", "filename": path.name,
            **fields}


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    yield from live_server(tmp_path_factory.mktemp("tus-clients"))


# ---------------------------------------------------------------------------------------------
# The two clients behind one face: send a file (whole, or its first chunks), resume it, see the answer.

@dataclass
class Sent:
    ok: bool
    url: str | None
    status: int | None = None  # of the refusing answer, when not ok
    headers: dict[str, str] = field(default_factory=dict)  # of the last answer (lower-case names)
    body: str = ""
    resumed_at: int | None = None  # the offset the server reported to the resuming client
    requests: list[dict[str, Any]] = field(default_factory=list)  # tus-js-client: every answered request

    @property
    def media_id(self) -> str | None:
        return self.headers.get("media-id")

    @property
    def code(self) -> str | None:
        try:
            return json.loads(self.body).get("code")
        except ValueError:
            return None


class Tuspy:
    name = "tuspy"

    def __init__(self, live: Live, auth: dict[str, str], workdir: Path) -> None:
        self.live = live
        self.auth = auth
        self.storage_path = workdir / "tuspy-urls.json"  # tuspy's own URL store (tinydb), as an app keeps it

    def uploader(self, path: Path, metadata: dict[str, str] | None, chunk: int | None, *, url: str | None = None,
                 stored: bool = False, uploader_class: type[Uploader] = Uploader, **options: Any) -> Uploader:
        """A new tuspy client's uploader; with `url` (or a URL in its storage) it HEADs it at once."""
        client = TusClient(self.live.endpoint, headers=dict(self.auth))
        storage = FileStorage(str(self.storage_path)) if stored else None
        return uploader_class(file_path=str(path), client=client, chunk_size=chunk or maxsize,
                              metadata=metadata or {}, url=url, store_url=stored, url_storage=storage, **options)

    @staticmethod
    def sent(uploader: Uploader, resumed_at: int | None = None) -> Sent:
        request = uploader.request
        headers = dict(request.response_headers) if request is not None else {}
        body = request.response_content.decode() if request is not None and request.response_content else ""
        return Sent(True, uploader.url, request.status_code if request else None, headers, body, resumed_at)

    @staticmethod
    def refused(error: TusCommunicationError, url: str | None) -> Sent:
        content = error.response_content or b""
        return Sent(False, url, error.status_code, {}, content.decode() if isinstance(content, bytes) else content)

    def send(self, path: Path, metadata: dict[str, str], chunk: int | None = None) -> Sent:
        uploader = None
        try:
            uploader = self.uploader(path, metadata, chunk)
            uploader.upload()
        except TusCommunicationError as error:
            return self.refused(error, uploader.url if uploader else None)
        return self.sent(uploader)

    def send_first_chunks(self, path: Path, metadata: dict[str, str], chunk: int, chunks: int = 1) -> str:
        """Upload `chunks` chunks and stop, the URL kept in tuspy's storage; answers the URL."""
        uploader = self.uploader(path, metadata, chunk, stored=True)
        uploader.upload(stop_at=chunk * chunks)
        assert uploader.url is not None and uploader.offset == chunk * chunks
        return uploader.url

    def resume(self, path: Path, chunk: int, url: str | None = None, **options: Any) -> Sent:
        """A new client: the URL given, or the one tuspy stored for this file."""
        try:
            uploader = self.uploader(path, None, chunk, url=url, stored=url is None, **options)
        except TusCommunicationError as error:  # its HEAD, made as it is created, found no upload
            return self.refused(error, url)
        resumed_at = uploader.offset  # from that HEAD
        try:
            uploader.upload()
        except TusCommunicationError as error:
            refused = self.refused(error, uploader.url)
            refused.resumed_at = resumed_at
            return refused
        return self.sent(uploader, resumed_at)


class TusJs:
    name = "tus-js-client"

    def __init__(self, live: Live, auth: dict[str, str], workdir: Path, node: Node) -> None:
        self.live = live
        self.auth = auth
        self.node = node
        self.storage_path = workdir / "tus-js-urls.json"  # tus-js-client's FileUrlStorage

    def job(self, path: Path, metadata: dict[str, str] | None, chunk: int | None, **options: Any) -> dict[str, Any]:
        token = self.auth["Authorization"].removeprefix("Bearer ")
        return {"endpoint": self.live.endpoint, "token": token, "file": str(path), "metadata": metadata or {},
                "chunk_size": chunk, **options}

    @staticmethod
    def sent(report: dict[str, Any]) -> Sent:
        answer = report["last_response"] if report["ok"] else (report["error"] or {}).get("response")
        heads = [r for r in report["requests"] if r["method"] == "HEAD" and r["status"] == 200]
        resumed_at = int(heads[0]["headers"]["upload-offset"]) if heads else None
        headers = {k: v for k, v in (answer or {}).get("headers", {}).items() if v is not None}
        return Sent(report["ok"], report["url"], None if report["ok"] else (report["error"] or {}).get("status"),
                    headers, (answer or {}).get("body", ""), resumed_at, report["requests"])

    def send(self, path: Path, metadata: dict[str, str], chunk: int | None = None, **options: Any) -> Sent:
        return self.sent(self.node.run("tus_upload.mjs", self.job(path, metadata, chunk, **options)))

    def send_first_chunks(self, path: Path, metadata: dict[str, str], chunk: int, chunks: int = 1) -> str:
        report = self.node.run("tus_upload.mjs", self.job(path, metadata, chunk, stop_after_chunks=chunks,
                                                          url_storage=str(self.storage_path)))
        assert report["stopped"] and report["url"], report
        return report["url"]

    def resume(self, path: Path, chunk: int, url: str | None = None, **options: Any) -> Sent:
        where = {"upload_url": url} if url else {"url_storage": str(self.storage_path)}
        return self.send(path, {}, chunk, **where, **options)


@pytest.fixture(params=CLIENTS)
def client_kind(request: pytest.FixtureRequest) -> str:
    return request.param


def make_client(request: pytest.FixtureRequest, kind: str, live: Live, workdir: Path) -> Tuspy | TusJs:
    """The client of that kind; Node is asked for only by tus-js-client (tuspy runs without it)."""
    if kind == "tuspy":
        return Tuspy(live, admin(), workdir)
    return TusJs(live, admin(), workdir, request.getfixturevalue("node"))


@pytest.fixture
def client(request: pytest.FixtureRequest, client_kind: str, live: Live, tmp_path: Path) -> Tuspy | TusJs:
    return make_client(request, client_kind, live, tmp_path)


def assert_item_of(live: Live, sent: Sent, path: Path, entity_type: str, entity_id: str) -> dict[str, Any]:
    """The upload made an item holding exactly the file's bytes, listed on its entity."""
    assert sent.ok, (sent.status, sent.body)
    assert sent.media_id, f"the last answer names no Media-Id: {sent.headers}"
    # PATCH answers locate the item; a POST's Location stays the upload's (tus clients take it as the upload URL)
    location = sent.headers.get("location", "")
    assert location.endswith(f"/v1/media/{sent.media_id}") or location == sent.url, location
    assert live.received_sha256(sent.media_id) == sha256_of(path)
    outcome = live.finished(sent.url, admin())
    assert outcome.status_code == 200 and outcome.json()["id"] == int(sent.media_id), outcome.text
    listed = [item["id"] for item in live.listing(entity_type, entity_id, admin())]
    assert int(sent.media_id) in listed
    return outcome.json()


# ---------------------------------------------------------------------------------------------
# Whole files.

@pytest.mark.parametrize("path", [IMAGE, VIDEO], ids=["image", "video"])
def test_a_whole_file_becomes_the_same_item_as_a_form_upload(live: Live, client: Tuspy | TusJs, path: Path) -> None:
    entity = unique("WHOLE")
    sent = client.send(path, photos(entity, path, caption="sent by " + client.name))
    item = assert_item_of(live, sent, path, "property", entity)
    assert item["caption"] == "sent by " + client.name

    form = live.form_upload(path, GALLERY.format(entity=unique("FORM")), admin())
    assert form.status_code == 201, form.text
    expected = form.json()
    same = ("media_type", "content_type", "byte_size", "width", "height", "image_hash", "duration")
    assert {k: item[k] for k in same} == {k: expected[k] for k in same}
    assert hashlib.sha256(live.original(item)).digest() == hashlib.sha256(live.original(expected)).digest()


def test_creation_with_upload_sends_the_whole_file_in_the_post(live: Live, node: Node, tmp_path: Path) -> None:
    """tus-js-client's uploadDataDuringCreation: the POST carries the bytes and answers with the item."""
    entity = unique("CWU")
    sent = TusJs(live, admin(), tmp_path, node).send(IMAGE, photos(entity, IMAGE), upload_data_during_creation=True)
    assert [r["method"] for r in sent.requests] == ["POST"]
    assert_item_of(live, sent, IMAGE, "property", entity)


# ---------------------------------------------------------------------------------------------
# Interrupted, then resumed by a new client.

def test_an_interrupted_upload_resumes_in_a_new_client_without_resending(live: Live, client: Tuspy | TusJs) -> None:
    entity = unique("RESUME")
    url = client.send_first_chunks(VIDEO, photos(entity, VIDEO), CHUNK)
    assert live.offset(url, admin()) == CHUNK
    assert live.outcome(url, admin()).json()["state"] == "receiving"

    sent = client.resume(VIDEO, CHUNK)  # a new client that finds the URL where the first one kept it
    assert sent.url == url
    assert sent.resumed_at == CHUNK, "the new client resumes from the server's offset"
    if isinstance(client, TusJs):
        assert [r["method"] for r in sent.requests].count("POST") == 0
        offsets = [int(r["offset"]) for r in sent.requests if r["method"] == "PATCH"]
        assert offsets == list(range(CHUNK, VIDEO.stat().st_size, CHUNK)), "no byte is sent twice"
    assert_item_of(live, sent, VIDEO, "property", entity)


def test_a_finished_upload_resumed_again_reports_its_item(live: Live, client: Tuspy | TusJs) -> None:
    """A client that lost the last answer and resumes: the HEAD says everything arrived, and names the item."""
    entity = unique("AGAIN")
    first = client.send(IMAGE, photos(entity, IMAGE), CHUNK)
    assert first.ok and first.media_id
    head = live.head(first.url, admin())
    assert head.headers["upload-offset"] == head.headers["upload-length"]
    assert head.headers["media-id"] == first.media_id
    again = client.resume(IMAGE, CHUNK, url=first.url)
    assert again.ok and again.resumed_at == IMAGE.stat().st_size
    if isinstance(client, TusJs):  # its onSuccess gets the HEAD answer: the item is named there
        assert [r["method"] for r in again.requests] == ["HEAD"] and again.media_id == first.media_id
    assert [item["id"] for item in live.listing("property", entity, admin())] == [int(first.media_id)]


# ---------------------------------------------------------------------------------------------
# Checksums: tuspy sends Upload-Checksum itself; tus-js-client has no checksum support, so its job adds a
# wrong header in onBeforeRequest, as an app would.

def uploader_with(name: str, digest: Callable[[bytes], Any]) -> type[Uploader]:
    return type(f"{name}Uploader", (Uploader,), {"CHECKSUM_ALGORITHM_PAIR": (name, digest)})


@pytest.mark.parametrize("algorithm", ["sha1", "sha256", "md5"])
def test_tuspy_checksums_of_every_chunk_are_accepted(live: Live, tmp_path: Path, algorithm: str) -> None:
    entity = unique("SUM")
    tuspy = Tuspy(live, admin(), tmp_path)
    url = tuspy.send_first_chunks(VIDEO, photos(entity, VIDEO), CHUNK)
    sent = tuspy.resume(VIDEO, CHUNK, url=url, upload_checksum=True,
                        uploader_class=uploader_with(algorithm, getattr(hashlib, algorithm)))
    assert_item_of(live, sent, VIDEO, "property", entity)


def test_a_checksum_mismatch_is_460_and_keeps_the_offset(live: Live, client: Tuspy | TusJs) -> None:
    entity = unique("MISMATCH")
    url = client.send_first_chunks(VIDEO, photos(entity, VIDEO), CHUNK)
    if isinstance(client, Tuspy):
        wrong = uploader_with("sha256", lambda data: hashlib.sha256(data + b"\0"))
        refused = client.resume(VIDEO, CHUNK, url=url, upload_checksum=True, uploader_class=wrong)
    else:
        refused = client.resume(VIDEO, CHUNK, url=url, bad_checksum=True)
    assert (refused.ok, refused.status, refused.code) == (False, 460, "checksum_mismatch"), refused.body
    assert live.offset(url, admin()) == CHUNK, "a chunk that failed its checksum is not kept"

    sent = client.resume(VIDEO, CHUNK, url=url)
    assert sent.resumed_at == CHUNK
    assert_item_of(live, sent, VIDEO, "property", entity)


# ---------------------------------------------------------------------------------------------
# Termination.

def test_a_terminated_upload_is_gone(live: Live, client: Tuspy | TusJs) -> None:
    entity = unique("TERM")
    if isinstance(client, TusJs):  # abort(true): tus-js-client's own termination (a DELETE, 204 expected)
        job = client.job(VIDEO, photos(entity, VIDEO), CHUNK, terminate_after_chunks=1)
        report = client.node.run("tus_upload.mjs", job)
        assert report["terminated"], report
        url = report["url"]
        assert [r["method"] for r in report["requests"]][-1] == "DELETE"
    else:  # tuspy has no termination: the DELETE an app would send beside it
        url = client.send_first_chunks(VIDEO, photos(entity, VIDEO), CHUNK)
        deleted = requests.delete(url, headers={**admin(), **TUS}, timeout=30)
        assert deleted.status_code == 204, deleted.text
    assert live.head(url, admin()).status_code in (404, 410)
    assert live.outcome(url, admin()).status_code in (404, 410)
    resumed = client.resume(VIDEO, CHUNK, url=url)
    if isinstance(client, Tuspy):
        assert not resumed.ok  # tuspy's HEAD finds no offset: it raises, never a new upload
    else:  # tus-js-client answers a 4xx HEAD by creating a new upload from byte 0: never the old URL
        assert [(r["method"], r["status"] in (404, 410)) for r in resumed.requests][0] == ("HEAD", True)
        assert resumed.url != url
    assert live.listing("property", entity, admin()) == []


# ---------------------------------------------------------------------------------------------
# One single-slot field, two uploads at once.

def test_two_uploads_to_one_single_slot_field_leave_one_current(live: Live, node: Node, tmp_path: Path) -> None:
    user = unique("USR")
    auth = bearer(user, verified=True)
    avatar = {"entity_type": "user", "entity_id": user, "entity_field": "avatar"}
    results: dict[str, Sent] = {}

    def by_tuspy() -> None:
        results["tuspy"] = Tuspy(live, auth, tmp_path).send(IMAGE, {**avatar, "filename": IMAGE.name}, 16 * KIB)

    thread = threading.Thread(target=by_tuspy)
    thread.start()
    results["tus-js-client"] = TusJs(live, auth, tmp_path, node).send(OTHER_IMAGE, {**avatar, "filename": "b.png"},
                                                                      16 * KIB)
    thread.join(timeout=120)
    ids = {name: sent.media_id for name, sent in results.items()}
    assert all(sent.ok for sent in results.values()) and all(ids.values()), results
    listed = live.listing("user", user)
    assert len(listed) == 1 and listed[0]["is_primary"], listed
    assert str(listed[0]["id"]) in ids.values()


# ---------------------------------------------------------------------------------------------
# Concatenation: tus-js-client's parallelUploads.

def test_parallel_uploads_are_joined_by_concatenation(live: Live, node: Node, tmp_path: Path) -> None:
    entity = unique("PARALLEL")
    sent = TusJs(live, admin(), tmp_path, node).send(VIDEO, photos(entity, VIDEO), parallel_uploads=3)
    posts = [r for r in sent.requests if r["method"] == "POST"]
    assert [r["concat"] for r in posts].count("partial") == 3
    final = [r for r in posts if (r["concat"] or "").startswith("final;")]
    assert len(final) == 1 and len(final[0]["concat"].split()) == 3
    assert sent.headers.get("media-id") and sent.url == final[0]["headers"]["location"]
    assert live.received_sha256(sent.media_id) == sha256_of(VIDEO)
    assert int(sent.media_id) in [item["id"] for item in live.listing("property", entity, admin())]
    assert live.finished(sent.url, admin()).json()["id"] == int(sent.media_id)


# ---------------------------------------------------------------------------------------------
# Refused files: the form upload's code.

REJECTS = [f for f in corpus_files() if not f.accepted]


def test_every_rejected_corpus_file_gets_the_form_uploads_code(live: Live, node: Node, tmp_path: Path) -> None:
    mismatches = []
    clients = (Tuspy(live, admin(), tmp_path), TusJs(live, admin(), tmp_path, node))
    for corpus_file in REJECTS:
        form = live.form_upload(corpus_file.path, GALLERY.format(entity=unique("REJ")), admin())
        assert 400 <= form.status_code < 500, (corpus_file.name, form.status_code, form.text)
        expected = form.json()["code"]
        for tus in clients:
            sent = tus.send(corpus_file.path, photos(unique("REJ"), corpus_file.path))
            codes = {"answer": sent.code}
            if sent.url:  # created: the upload keeps telling its outcome
                codes["GET"] = live.finished(sent.url, admin()).json().get("code")
            if sent.ok or set(codes.values()) != {expected}:
                mismatches.append((corpus_file.name, tus.name, expected, sent.status, codes))
    assert not mismatches, "\n".join(f"{name} by {client}: form {expected}, tus {status} {codes}"
                                     for name, client, expected, status, codes in mismatches)


# ---------------------------------------------------------------------------------------------
# kill -9 of the server mid-upload; a restart on the same port, database and temp dir.

@pytest.fixture(scope="module")
def restartable(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    yield from live_server(tmp_path_factory.mktemp("tus-restart"))


def kill_and_restart(live: Live) -> None:
    port = live.server.port
    live.server.kill9()
    time.sleep(0.5)  # the clients meet a dead server before it is back
    live.restart(port)


def test_tus_js_client_upload_survives_a_server_kill(restartable: Live, node: Node, tmp_path: Path) -> None:
    live = restartable
    entity = unique("KILL")
    progress = tmp_path / "progress.jsonl"
    progress.touch()
    tus = TusJs(live, admin(), tmp_path, node)
    job = tus.job(VIDEO, photos(entity, VIDEO), SLOW_CHUNK, chunk_delay_ms=150, progress_file=str(progress),
                  retry_delays=RETRY_DELAYS_MS)
    process = node.start("tus_upload.mjs", job)
    try:
        assert wait_until(lambda: len(progress.read_text().splitlines()) >= 3, 60), "no chunk arrived"
        kill_and_restart(live)
    finally:
        report = node.report(process)
    sent = tus.sent(report)
    methods = [r["method"] for r in sent.requests]
    assert methods.count("POST") == 1, "the client resumed the same upload, never a new one"
    heads = [r for r in sent.requests if r["method"] == "HEAD"]
    assert heads and int(heads[0]["headers"]["upload-offset"]) >= 3 * SLOW_CHUNK
    assert_item_of(live, sent, VIDEO, "property", entity)


def test_tuspy_upload_survives_a_server_kill(restartable: Live, tmp_path: Path) -> None:
    live = restartable
    entity = unique("KILL")
    tuspy = Tuspy(live, admin(), tmp_path)
    uploader = tuspy.uploader(VIDEO, photos(entity, VIDEO), SLOW_CHUNK, retries=10, retry_delay=1)
    uploader.upload(stop_at=3 * SLOW_CHUNK)
    url = uploader.url
    starts = live.server.starts
    restart = threading.Thread(target=kill_and_restart, args=(live,))
    restart.start()  # the next PATCH meets the dead server; tuspy retries (HEAD, then PATCH) until it is back
    time.sleep(0.2)
    try:
        uploader.upload()
    finally:
        restart.join(timeout=90)
    assert uploader.url == url and live.server.starts == starts + 1
    assert_item_of(live, tuspy.sent(uploader), VIDEO, "property", entity)


def test_a_kill_during_the_ingest_still_makes_one_item(restartable: Live, node: Node, tmp_path: Path,
                                                       big_png: Path) -> None:
    """Every byte in, the server killed while it ingests (decoding a 14.5 MB PNG): after the restart and the
    lease, the client's resuming HEAD finds the upload complete, and the item is made exactly once."""
    live = restartable
    entity = unique("INGEST")
    tus = TusJs(live, admin(), tmp_path, node)
    process = node.start("tus_upload.mjs", tus.job(big_png, photos(entity, big_png), 4 * MIB,
                                                   retry_delays=RETRY_DELAYS_MS))
    try:
        assert wait_until(lambda: live.ingesting(entity), 60, interval=0.02), "the ingest was not seen"
        kill_and_restart(live)
    finally:
        report = node.report(process)
    sent = tus.sent(report)
    assert sent.ok, report
    assert [r["method"] for r in sent.requests].count("POST") == 1
    media_id = sent.media_id or str(live.finished(sent.url, admin()).json()["id"])
    assert live.received_sha256(media_id) == sha256_of(big_png)
    assert [item["id"] for item in live.listing("property", entity, admin())] == [int(media_id)]


# ---------------------------------------------------------------------------------------------
# tus on the S3 staging (moto): parts written as they arrive, a tail under the minimum part size.

@pytest.fixture(scope="module")
def live_s3(tmp_path_factory: pytest.TempPathFactory, s3_server: str) -> Iterator[Live]:
    yield from live_server(tmp_path_factory.mktemp("tus-s3"), s3_endpoint=s3_server, upload_part_size=5 * MIB)


@pytest.mark.s3
def test_an_interrupted_upload_on_s3_resumes_in_a_new_client(request: pytest.FixtureRequest, live_s3: Live,
                                                             client_kind: str, tmp_path: Path, big_png: Path) -> None:
    client = make_client(request, client_kind, live_s3, tmp_path)
    entity = unique("S3")
    chunk = 3 * MIB
    url = client.send_first_chunks(big_png, photos(entity, big_png), chunk, chunks=2)
    assert live_s3.offset(url, admin()) == 2 * chunk  # one 5 MiB part and a 1 MiB tail
    sent = client.resume(big_png, chunk)
    assert sent.resumed_at == 2 * chunk
    assert_item_of(live_s3, sent, big_png, "property", entity)
