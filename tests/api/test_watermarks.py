"""Watermarks over HTTP: the owner downloads the original unmarked; the large preset carries the mark."""

from __future__ import annotations

import io
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


def test_the_owner_downloads_the_original_unmarked_and_large_is_marked(app_factory: AppFactory, tokens: Tokens,
                                                                        tmp_path):
    mark = {"image": str(mark_file(tmp_path, (0, 0, 0))), "opacity": 1.0, "scale": 0.25, "margin": 0.02}
    app = app_factory(image_sizes="thumbnail:150x150:crop,small:400,large:1200",
                      watermarks={"builder.portfolio": mark})
    owner = tokens.header("USR-OWNER", verified=True)
    with TestClient(app) as client:
        add_member(client, tokens, "builder:B-1", "USR-OWNER")
        add_member(client, tokens, "property:P-1", "USR-OWNER")
        marked = upload(client, "/v1/media/builders/B-1/portfolio", owner, PHOTO).json()
        plain = upload(client, "/v1/media/properties/P-1/photos", owner, PHOTO).json()
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
