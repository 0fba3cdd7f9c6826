"""Uppy's @uppy/aws-s3 (5.x, `endpoint` + `headers`) sends files straight to the bucket (moto's S3 server)
through the routes under /v1/media/s3 of a real `mediahub serve`, headless in Node (uppy_s3.mjs): the
plugin's own create / sign / PUT / list / complete code, with xhr2 standing in for the browser's
XMLHttpRequest. One server per module.

Not here: Uppy's presigned POST path (small files without multipart). moto answers a POST upload without the
ETag header S3 sends, and @uppy/aws-s3 5.x waits for that header forever (AwsS3Multipart.uploadPartBytes).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.clients.conftest import GALLERY, Live, Node, live_server, sha256_of, unique
from tests.reliability.harness import admin
from tests.support.corpus import CORPUS_DIR, corpus_files

pytestmark = pytest.mark.s3

MIB = 1024 * 1024
PART = 5 * MIB  # S3's smallest part but the last
IMAGE = CORPUS_DIR / "images/good/jpeg_hopper.jpg"


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, s3_server: str) -> Iterator[Live]:
    yield from live_server(tmp_path_factory.mktemp("uppy"), s3_endpoint=s3_server)


def file_spec(path: Path, entity: str, **extra: Any) -> dict[str, Any]:
    meta = {"entity_type": "property", "entity_id": entity, "entity_field": "photos"}
    return {"file": str(path), "name": path.name, "type": "application/octet-stream", "meta": meta, **extra}


def uppy(node: Node, live: Live, files: list[dict[str, Any]], **options: Any) -> dict[str, Any]:
    token = admin()["Authorization"].removeprefix("Bearer ")
    job = {"endpoint": f"{live.url}/v1/media", "token": token, "chunk_size": PART, "files": files, **options}
    return node.run("uppy_s3.mjs", job)["files"]


def calls(result: dict[str, Any]) -> list[tuple[str, str, int]]:
    """(method, what, status) of each API call, the ids left out: `sign 2`, `list`, `complete`."""
    out = []
    for call in result["calls"]:
        tail = call["path"].split("/v1/media/s3/", 1)[1].split("/")
        what = {1: "create", 2: "list", 3: "complete" if tail[-1] == "complete" else f"sign {tail[-1]}"}[len(tail)]
        out.append((call["method"], what, call["status"]))
    return out


def assert_item(live: Live, result: dict[str, Any], path: Path, entity: str) -> dict[str, Any]:
    assert result["ok"], result
    item = result["response"]
    assert item["location"].endswith(f"/v1/media/{item['id']}")
    assert live.received_sha256(item["id"]) == sha256_of(path)
    assert item["id"] in [listed["id"] for listed in live.listing("property", entity, admin())]
    return item


def test_a_multipart_upload_makes_the_item(live: Live, node: Node, big_png: Path) -> None:
    entity = unique("UPPY")
    result = uppy(node, live, [file_spec(big_png, entity)])[big_png.name]
    assert sorted(result["parts_put"]) == [1, 2, 3]  # 14.5 MB in 5 MiB parts
    assert sorted(calls(result)) == sorted([("POST", "create", 201), ("GET", "sign 1", 200), ("GET", "sign 2", 200),
                                            ("GET", "sign 3", 200), ("POST", "complete", 201)])
    item = assert_item(live, result, big_png, entity)
    assert item["width"] == item["height"] == 2200


def test_an_interrupted_multipart_upload_resumes_in_a_new_uppy(live: Live, node: Node, big_png: Path) -> None:
    entity = unique("UPPY")
    first = uppy(node, live, [file_spec(big_png, entity)], limit=1, stop_after_parts=1)[big_png.name]
    assert first["stopped"] and first["parts_put"] == [1] and first["state"]["uploadId"], first

    result = uppy(node, live, [file_spec(big_png, entity, resume=first["state"])])[big_png.name]
    assert sorted(result["parts_put"]) == [2, 3], "the part already in the bucket is not sent again"
    assert calls(result)[0] == ("GET", "list", 200)
    assert ("POST", "create", 201) not in calls(result)
    assert_item(live, result, big_png, entity)


def test_every_rejected_corpus_file_gets_the_form_uploads_code(live: Live, node: Node) -> None:
    """All at once in one Uppy, each a one-part multipart upload refused at its completion."""
    rejects = [f for f in corpus_files() if not f.accepted]
    expected = {}
    for corpus_file in rejects:
        form = live.form_upload(corpus_file.path, GALLERY.format(entity=unique("FORM")), admin())
        assert 400 <= form.status_code < 500, (corpus_file.name, form.text)
        expected[corpus_file.path.name] = form.json()["code"]
    results = uppy(node, live, [file_spec(f.path, unique("REJ")) for f in rejects])
    got = {}
    for name, result in results.items():  # the first refusal: Uppy then aborts, which is refused in turn
        refusals = [call for call in result["calls"] if call["status"] >= 400]
        got[name] = _code(refusals[0]["body"]) if refusals and not result["ok"] else "stored"
    assert got == expected


def _code(body: str) -> str | None:
    try:
        return json.loads(body).get("code")
    except ValueError:
        return None
