"""Watermarks over HTTP: the owner downloads the original unmarked; the large preset carries the mark."""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

import numpy as np
from fastapi.testclient import TestClient
from PIL import Image

from tests.api.conftest import AppFactory, Tokens, add_member, upload
from tests.support.corpus import CORPUS_DIR
from tests.support.watermarks import mark_file

PHOTO = CORPUS_DIR / "images/good/orient_landscape_1.jpg"  # 1800x1200: large is 1200x800


def _get(client, url: str, headers: dict[str, str]) -> bytes:
    parts = urlsplit(url)
    response = client.get(parts.path + (f"?{parts.query}" if parts.query else ""), headers=headers)
    assert response.status_code == 200, response.text
    return response.content


@contextmanager
def _marked_and_plain(app_factory: AppFactory, tokens: Tokens, tmp_path, owner: dict[str, str],
                      **mark) -> Iterator[tuple[TestClient, dict, dict]]:
    """PHOTO uploaded by its owner to a field with an opaque black mark (builder portfolio) and to one without."""
    mark = {"image": str(mark_file(tmp_path, (0, 0, 0))), "opacity": 1.0, "scale": 0.25, "margin": 0.02, **mark}
    app = app_factory(image_sizes="thumbnail:150x150:crop,small:400,large:1200",
                      watermarks={"builder.portfolio": mark})
    with TestClient(app) as client:
        add_member(client, tokens, "builder:B-1", "USR-OWNER")
        add_member(client, tokens, "property:P-1", "USR-OWNER")
        marked = upload(client, "/v1/media/builders/B-1/portfolio", owner, PHOTO).json()
        plain = upload(client, "/v1/media/properties/P-1/photos", owner, PHOTO).json()
        yield client, marked, plain


def test_the_owner_downloads_the_original_unmarked_and_large_is_marked(app_factory: AppFactory, tokens: Tokens,
                                                                        tmp_path):
    owner = tokens.header("USR-OWNER", verified=True)
    with _marked_and_plain(app_factory, tokens, tmp_path, owner) as (client, marked, plain):
        assert _get(client, marked["url"], owner) == _get(client, plain["url"], owner), "the original: never marked"
        for name in ("thumbnail", "small"):
            assert _get(client, marked["variants"][name]["jpeg"]["url"], owner) == _get(
                client, plain["variants"][name]["jpeg"]["url"], owner), name
        large, unmarked = (np.asarray(Image.open(io.BytesIO(_get(client, item["variants"]["large"]["jpeg"]["url"],
                                                                   owner))), dtype=np.int16)
                           for item in (marked, plain))
    # An opaque black mark: 300x150 at (876, 626), inside the 24 px margin.
    assert np.abs(large[634:768, 884:1168]).mean() < 3 < np.abs(unmarked[634:768, 884:1168]).mean()
    assert np.abs(large[:600] - unmarked[:600]).max() == 0


def test_renders_made_on_request_carry_the_mark_where_it_applies(app_factory: AppFactory, tokens: Tokens, tmp_path):
    owner = tokens.header("USR-OWNER", verified=True)
    with _marked_and_plain(app_factory, tokens, tmp_path, owner, min_width=600) as (client, marked, plain):
        def both(path: str, **transform) -> tuple[bytes, bytes]:
            got = []
            for item in (marked, plain):
                if transform:
                    signed = client.post(f"/v1/media/{item['id']}/transform-url", json=transform, headers=owner)
                    url = signed.json()["url"]
                else:
                    url = f"/v1/images/{item['public_id']}/{path}"
                got.append(_get(client, url, owner))
            return got[0], got[1]

        large_avif = both("large.avif")  # no AVIF at upload: made on the first request
        original_webp = both("original.webp")
        wide = both("", width=800, format="jpeg")  # 800x533: above min_width
        narrow = both("", width=400, format="jpeg")
    assert original_webp[0] == original_webp[1], "the original in another format: never marked"
    assert narrow[0] == narrow[1], "under min_width: no mark"
    for (marked_bytes, plain_bytes), box in ((large_avif, (slice(634, 768), slice(884, 1168))),
                                             (wide, (slice(425, 509), slice(592, 776)))):
        pixels, unmarked = (np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.int16)
                            for data in (marked_bytes, plain_bytes))
        assert np.abs(pixels[box]).mean() < 4 < np.abs(unmarked[box]).mean() - 20, "the opaque black mark"
        assert np.abs(pixels[:300] - unmarked[:300]).mean() < 1, "the rest of the picture as it was"


def test_a_changed_mark_makes_new_transform_results(app_factory: AppFactory, tokens: Tokens, tmp_path):
    owner = tokens.header("USR-OWNER", verified=True)
    sizes = "thumbnail:150x150:crop,small:400,large:1200"
    black = {"image": str(mark_file(tmp_path, (0, 0, 0), name="black.png")), "opacity": 1.0, "scale": 0.25}
    white = {**black, "image": str(mark_file(tmp_path, (255, 255, 255), name="white.png"))}
    box = (slice(425, 509), slice(592, 776))  # where the mark of an 800x533 result goes (as above)
    results = []
    for mark in (black, white):
        with TestClient(app_factory(image_sizes=sizes, watermarks={"builder.portfolio": mark})) as client:
            if not results:
                add_member(client, tokens, "builder:B-1", "USR-OWNER")
                item = upload(client, "/v1/media/builders/B-1/portfolio", owner, PHOTO).json()
                url = client.post(f"/v1/media/{item['id']}/transform-url", json={"width": 800, "format": "jpeg"},
                                  headers=owner).json()["url"]
            results.append(np.asarray(Image.open(io.BytesIO(_get(client, url, owner))).convert("L"), dtype=np.int16))
    assert results[0][box].mean() < 10 and results[1][box].mean() > 245
