"""Limits at their exact boundary, over HTTP: the byte cap of a chunked body, the pixel limit,
the dedup threshold and the JWT `exp` leeway.

The service-level side of the same rules is tests/media/test_rule_boundaries.py.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from mediahub.api.auth import TokenVerifier
from mediahub.errors import Unauthenticated
from mediahub.pipeline.image import process_image
from mediahub.pipeline.options import image_options
from mediahub.pipeline.sniff import sniff
from tests.api.conftest import JWT_SECRET, AppFactory, Tokens, assert_problem, make_settings, upload
from tests.support.corpus import CORPUS_DIR

AVATAR = "/v1/media/users/USR-1/avatar"  # images only: the streaming cap is the image cap
GALLERY = "/v1/media/properties/P-1/photos"
PHOTO = CORPUS_DIR / "images/good/jpeg_flower.jpg"


def chunked(body: bytes, size: int = 4096) -> Iterator[bytes]:
    """A body the client sends with Transfer-Encoding: chunked, no Content-Length."""
    for start in range(0, len(body), size):
        yield body[start:start + size]


def multipart(data: bytes, filename: str = "photo.jpg") -> bytes:
    return (b'--b\r\nContent-Disposition: form-data; name="file"; filename="' + filename.encode() + b'"\r\n'
            b"Content-Type: application/octet-stream\r\n\r\n" + data + b"\r\n--b--\r\n")


def post_chunked(client: TestClient, tokens: Tokens, data: bytes):
    return client.post(AVATAR, content=chunked(multipart(data)), headers={
        **tokens.header("USR-1"), "Content-Type": "multipart/form-data; boundary=b"})


def test_a_chunked_upload_of_exactly_the_cap_is_stored_and_one_byte_more_is_413(app_factory: AppFactory,
                                                                                 tokens: Tokens) -> None:
    data = PHOTO.read_bytes()
    with TestClient(app_factory(max_image_size=len(data) - 1)) as client:
        assert_problem(post_chunked(client, tokens, data), 413, "too_large")
    with TestClient(app_factory(max_image_size=len(data))) as client:
        response = post_chunked(client, tokens, data)
        assert response.status_code == 201, response.text


def test_an_image_of_exactly_max_image_pixels_is_stored_and_one_pixel_more_is_422(app_factory: AppFactory,
                                                                                  tokens: Tokens,
                                                                                  tmp_path: Path) -> None:
    picture = tmp_path / "picture.png"
    Image.effect_noise((120, 50), 60).convert("RGB").save(picture)
    with TestClient(app_factory(max_image_pixels=120 * 50 - 1)) as client:
        assert_problem(upload(client, AVATAR, tokens.header("USR-1"), file=picture), 422, "too_many_pixels")
    with TestClient(app_factory(max_image_pixels=120 * 50)) as client:
        response = upload(client, AVATAR, tokens.header("USR-1"), file=picture)
        assert response.status_code == 201, response.text
        assert (response.json()["width"], response.json()["height"]) == (120, 50)


def test_a_near_duplicate_at_exactly_the_threshold_is_409_and_one_bit_further_is_stored(
        app_factory: AppFactory, tokens: Tokens, tmp_path: Path) -> None:
    marked = tmp_path / "marked.png"
    image = Image.open(PHOTO).convert("RGB")
    image.paste((255, 255, 255), (50, 50, 150, 150))
    image.save(marked)
    options = image_options(make_settings(tmp_path))
    first_fp, second_fp = (process_image(p, sniff(p.read_bytes()[:4096]), options).fingerprint for p in (PHOTO, marked))
    d = first_fp.compare(second_fp, 32)
    assert d is not None and d >= 1, "a near duplicate, not an exact one"
    owner = tokens.header("USR-1", grants=("property:P-1",))
    with TestClient(app_factory(dedup_policy="reject", dedup_threshold=d)) as client:
        first = upload(client, GALLERY, owner, file=PHOTO)
        assert first.status_code == 201, first.text
        body = assert_problem(upload(client, GALLERY, owner, file=marked), 409, "duplicate")
        assert body["distance"] == d
    with TestClient(app_factory(dedup_policy="reject", dedup_threshold=d - 1)) as client:
        response = upload(client, GALLERY, owner, file=marked)
        assert response.status_code == 201, response.text


@pytest.mark.parametrize(("expired_for", "status"), [
    (15, 200),  # within the 30 s clock-skew leeway: accepted
    (45, 401),  # past it: refused
    (120, 401),
])
def test_a_token_is_accepted_within_the_exp_leeway_and_refused_past_it(app_factory: AppFactory, expired_for: int,
                                                                       status: int) -> None:
    token = jwt.encode({"sub": "MOD-1", "roles": ["user", "moderator"], "exp": int(time.time()) - expired_for},
                       JWT_SECRET, algorithm="HS256")
    with TestClient(app_factory()) as client:
        response = client.get("/v1/media/moderation/queue", headers={"Authorization": f"Bearer {token}"})
    if status == 200:
        assert response.status_code == 200, response.text
    else:
        assert_problem(response, 401, "invalid_token")


@pytest.mark.parametrize(("expired_for", "accepted"), [(15, True), (45, False)])
def test_the_verifier_applies_the_same_exp_leeway(tmp_path: Path, expired_for: int, accepted: bool) -> None:
    """Below HTTP: TokenVerifier alone, as every route's dependency calls it."""
    verifier = TokenVerifier(make_settings(tmp_path))
    token = jwt.encode({"sub": "USR-1", "exp": int(time.time()) - expired_for}, JWT_SECRET, algorithm="HS256")
    if accepted:
        assert verifier.principal(token).sub == "USR-1"
    else:
        with pytest.raises(Unauthenticated) as caught:
            verifier.principal(token)
        assert caught.value.code == "invalid_token"
