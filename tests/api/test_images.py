"""Delivery: preset URLs negotiated by Accept, signed transforms, stored results, limits and gating."""

from __future__ import annotations

import hashlib
import io
import threading
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from tests.api.conftest import AppFactory, Tokens, assert_problem, upload
from tests.support.corpus import CORPUS_DIR

LANDSCAPE_6 = CORPUS_DIR / "images/good/orient_landscape_6.jpg"  # 1200x1800 stored, 1800x1200 upright
BROWSER_ACCEPT = "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8"
SIZES = "thumbnail:150x150:crop,small:400,large:1600"


def _path(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


@pytest.fixture
def images(app_factory: AppFactory) -> TestClient:
    with TestClient(app_factory(image_sizes=SIZES)) as client:
        yield client


def _approved(client: TestClient, tokens: Tokens, file: Path = LANDSCAPE_6, sub: str = "USR-2") -> dict:
    response = upload(client, f"/v1/media/users/{sub}/avatar", tokens.header(sub, verified=True), file=file)
    assert response.status_code == 201, response.text
    assert response.json()["moderation_status"] == "approved"
    return response.json()


def _pending(client: TestClient, tokens: Tokens, owner: str = "USR-1") -> dict:
    response = upload(client, f"/v1/media/users/{owner}/avatar", tokens.header(owner), file=LANDSCAPE_6)
    assert response.json()["moderation_status"] == "pending"
    return response.json()


def _picture(response) -> Image.Image:
    return Image.open(io.BytesIO(response.content))


def _sign(client: TestClient, item: dict, headers: dict[str, str] | None = None, **options) -> dict:
    """A transform URL, asked for by `headers` (by default a signed-in stranger's)."""
    response = client.post(f"/v1/media/{item['id']}/transform-url", json=options, headers=headers or Tokens().user())
    assert response.status_code == 200, response.text
    return response.json()


# Negotiated presets


@pytest.mark.parametrize(("accept", "content_type"), [
    (BROWSER_ACCEPT, "image/avif"),
    ("image/webp,*/*", "image/webp"),
    ("*/*", "image/jpeg"),
    (None, "image/jpeg"),
    ("image/avif;q=0,image/webp", "image/webp"),
])
def test_a_preset_answers_the_best_format_the_client_names(images: TestClient, tokens: Tokens, accept: str | None,
                                                           content_type: str) -> None:
    item = _approved(images, tokens)
    response = images.get(f"/v1/images/{item['public_id']}/small", headers={"Accept": accept} if accept else {})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == content_type
    assert response.headers["vary"] == "Accept"
    assert response.headers["cache-control"] == "public, max-age=3600"
    picture = _picture(response)
    assert picture.size == (400, 267)  # upright: the stored JPEG is 1200x1800 with orientation 6
    assert picture.format == {"image/avif": "AVIF", "image/webp": "WEBP", "image/jpeg": "JPEG"}[content_type]


def test_an_explicit_format_url_does_not_vary(images: TestClient, tokens: Tokens) -> None:
    item = _approved(images, tokens)
    for extension, fmt in (("webp", "WEBP"), ("avif", "AVIF"), ("jpg", "JPEG")):
        response = images.get(f"/v1/images/{item['public_id']}/thumbnail.{extension}", headers={"Accept": "*/*"})
        assert response.status_code == 200, response.text
        assert "vary" not in response.headers
        assert _picture(response).format == fmt and _picture(response).size == (150, 150)


def test_preset_urls_match_the_listed_variants(images: TestClient, tokens: Tokens) -> None:
    item = _approved(images, tokens)
    listed = images.get(_path(item["variants"]["small"]["jpeg"]["url"]))
    served = images.get(f"/v1/images/{item['public_id']}/small.jpg")
    assert served.content == listed.content


def test_a_missing_rendition_is_made_once_then_served_from_the_store(images: TestClient, tokens: Tokens,
                                                                     tmp_path: Path) -> None:
    item = _approved(images, tokens)
    before = set((tmp_path / "media").rglob("*"))
    first = images.get(f"/v1/images/{item['public_id']}/large.avif")
    made = set((tmp_path / "media").rglob("*")) - before
    second = images.get(f"/v1/images/{item['public_id']}/large.avif")
    assert first.status_code == second.status_code == 200
    assert first.content == second.content
    assert len(made) == 1 and set((tmp_path / "media").rglob("*")) - before == made
    # and it is not listed among the item's presets
    assert "avif" not in images.get(f"/v1/media/{item['id']}").json()["variants"]["large"]


def test_the_original_preset_is_the_stored_original(images: TestClient, tokens: Tokens) -> None:
    item = _approved(images, tokens)
    response = images.get(f"/v1/images/{item['public_id']}/original", headers={"Accept": "*/*"})
    assert response.status_code == 200
    assert response.content == images.get(_path(item["url"])).content


def test_etags_are_strong_and_from_the_content(images: TestClient, tokens: Tokens) -> None:
    item = _approved(images, tokens)
    url = f"/v1/images/{item['public_id']}/small.webp"
    response = images.get(url)
    etag = response.headers["etag"]
    assert not etag.startswith("W/")
    assert etag == f'"{hashlib.sha256(response.content).hexdigest()[:32]}"'
    assert images.get(url, headers={"If-None-Match": etag}).status_code == 304
    negotiated = images.get(f"/v1/images/{item['public_id']}/small", headers={"Accept": "image/webp"})
    assert negotiated.headers["etag"] == etag
    not_modified = images.get(f"/v1/images/{item['public_id']}/small",
                              headers={"Accept": "image/webp", "If-None-Match": etag})
    assert not_modified.status_code == 304 and not_modified.headers["vary"] == "Accept"
    uploaded = images.get(f"/v1/images/{item['public_id']}/small.jpg")  # made by the upload, not on request
    assert uploaded.headers["etag"] == f'"{hashlib.sha256(uploaded.content).hexdigest()[:32]}"'


def test_head_and_ranges(images: TestClient, tokens: Tokens) -> None:
    item = _approved(images, tokens)
    url = f"/v1/images/{item['public_id']}/small.jpg"
    whole = images.get(url)
    head = images.head(url)
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str(len(whole.content))
    part = images.get(url, headers={"Range": "bytes=0-99"})
    assert part.status_code == 206 and part.content == whole.content[:100]
    stale = images.get(url, headers={"Range": "bytes=0-99", "If-Range": '"another"'})
    assert stale.status_code == 200 and stale.content == whole.content


@pytest.mark.parametrize(("path", "code"), [
    ("/small.gif", "no_such_format"),
    ("/huge", "no_such_preset"),
])
def test_unknown_presets_and_formats(images: TestClient, tokens: Tokens, path: str, code: str) -> None:
    item = _approved(images, tokens)
    assert_problem(images.get(f"/v1/images/{item['public_id']}{path}"), 404, code)


def test_pending_items_are_served_only_to_those_who_may_see_them(images: TestClient, tokens: Tokens) -> None:
    item = _pending(images, tokens)
    url = f"/v1/images/{item['public_id']}/small"
    assert_problem(images.get(url), 404, "image_not_found")
    assert_problem(images.get(url, headers=tokens.user()), 404, "image_not_found")
    assert_problem(images.get("/v1/images/nosuchid/small"), 404, "image_not_found")
    owner = images.get(url, headers=tokens.header("USR-1"))
    assert owner.status_code == 200
    assert owner.headers["cache-control"] == "private, no-store"


# Signed transforms


def test_a_signed_transform_renders_the_options(images: TestClient, tokens: Tokens) -> None:
    item = _approved(images, tokens)
    signed = _sign(images, item, width=300, height=300, fit="cover", format="webp")
    assert (signed["width"], signed["height"], signed["format"]) == (300, 300, "webp")
    response = images.get(_path(signed["url"]))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/webp" and "vary" not in response.headers
    assert _picture(response).size == (300, 300)
    assert set(signed["urls"]) == {"jpeg", "webp", "avif"}


@pytest.mark.parametrize(("options", "size"), [
    ({"width": 600, "height": 600, "fit": "inside"}, (600, 400)),
    ({"width": 600, "height": 600, "fit": "contain"}, (600, 600)),
    ({"width": 600, "height": 600, "fit": "fill"}, (600, 600)),
    ({"width": 300}, (300, 200)),
    ({"height": 300, "dpr": 2}, (900, 600)),
    ({"width": 4000, "height": 4000, "fit": "cover"}, (1200, 1200)),  # never enlarged: the box shrinks
])
def test_fits_and_sizes(images: TestClient, tokens: Tokens, options: dict, size: tuple[int, int]) -> None:
    item = _approved(images, tokens)
    signed = _sign(images, item, format="jpeg", **options)
    assert (signed["width"], signed["height"]) == size
    assert _picture(images.get(_path(signed["url"]))).size == size


def test_auto_transforms_negotiate(images: TestClient, tokens: Tokens) -> None:
    item = _approved(images, tokens)
    url = _path(_sign(images, item, width=200)["url"])
    assert url.split("?")[0].endswith(".auto")
    webp = images.get(url, headers={"Accept": "image/webp"})
    jpeg = images.get(url, headers={"Accept": "image/*"})
    assert webp.headers["content-type"] == "image/webp" and jpeg.headers["content-type"] == "image/jpeg"
    assert webp.headers["vary"] == jpeg.headers["vary"] == "Accept"


def _tampered(url: str) -> list[str]:
    path = _path(url)
    prefix, signature, spec = path.rsplit("/", 2)
    public_id = prefix.split("/")[3]
    flipped = signature[:-1] + ("A" if signature[-1] != "A" else "B")
    return [
        f"{prefix}/{flipped}/{spec}",
        f"{prefix}/{signature}/{spec.replace('w300', 'w301')}",
        f"{prefix}/{signature}/{spec.replace('.webp', '.jpg')}",
        f"{prefix}/{signature}/{spec.replace('-q0-', '-q1-')}",
        path.replace(public_id, public_id[:-1] + ("a" if public_id[-1] != "a" else "b")),
        f"{prefix}/_/{spec}",
    ]


def test_tampering_with_any_part_is_refused(images: TestClient, tokens: Tokens) -> None:
    item = _approved(images, tokens)
    url = _sign(images, item, width=300, format="webp")["url"]
    assert images.get(_path(url)).status_code == 200
    for tampered in _tampered(url):
        response = images.get(tampered)
        assert response.status_code == 403, tampered
        assert response.json()["code"] in ("invalid_signature", "unsigned_transform")


def test_a_signature_is_bound_to_its_item(images: TestClient, tokens: Tokens) -> None:
    first = _approved(images, tokens)
    second = _approved(images, tokens, sub="USR-3")
    url = _path(_sign(images, first, width=300, format="webp")["url"])
    assert_problem(images.get(url.replace(first["public_id"], second["public_id"])), 403, "invalid_signature")


def test_expiry_is_signed_and_enforced(images: TestClient, tokens: Tokens) -> None:
    item = _approved(images, tokens)
    signed = _sign(images, item, width=300, format="webp", expires_in=600)
    url = _path(signed["url"])
    assert signed["expires_at"] and "expires=" in url
    response = images.get(url)
    assert response.status_code == 200
    max_age = int(response.headers["cache-control"].split("max-age=")[1])
    assert 0 < max_age <= 600
    path, _, query = url.partition("?expires=")
    assert_problem(images.get(f"{path}?expires={int(query) + 60}"), 403, "invalid_signature")
    assert_problem(images.get(path), 403, "invalid_signature")
    assert_problem(images.get(f"{path}?expires=1000"), 403, "invalid_signature")


def test_keys_rotate(app_factory: AppFactory, tokens: Tokens) -> None:
    old, new = "o" + "ld-transform-key-0123456789abcdefghij", "n" + "ew-transform-key-0123456789abcdefghij"
    with TestClient(app_factory(transform_signing_keys=old)) as client:
        item = _approved(client, tokens)
        url = _path(_sign(client, item, width=120, format="jpeg")["url"])
    with TestClient(app_factory(transform_signing_keys=f"{new},{old}")) as client:
        assert client.get(url).status_code == 200  # signed by the old key, still verified
        fresh = _path(_sign(client, item, width=121, format="jpeg")["url"])
        assert client.get(fresh).status_code == 200
    with TestClient(app_factory(transform_signing_keys=new)) as client:
        assert_problem(client.get(url), 403, "invalid_signature")  # the old key retired
        assert client.get(fresh).status_code == 200


def test_unsigned_transforms_are_off_unless_enabled(app_factory: AppFactory, tokens: Tokens) -> None:
    with TestClient(app_factory()) as client:
        item = _approved(client, tokens)
        path = f"/v1/images/{item['public_id']}/t/_/w100-cover-focal-q0-d1.jpg"
        assert_problem(client.get(path), 403, "unsigned_transform")
    with TestClient(app_factory(unsigned_transforms=True)) as client:
        assert _picture(client.get(path)).size == (100, 67)
        assert_problem(client.get(f"/v1/images/{item['public_id']}/t/_/w100-cover-focal-q0-d1.0.jpg"), 422,
                       "invalid_transform")  # not the canonical text: one stored result per transform
        pending = _pending(client, tokens)
        assert_problem(client.get(f"/v1/images/{pending['public_id']}/t/_/w100-cover-focal-q0-d1.jpg"), 404)


def test_transforms_of_pending_items_answer_only_their_viewers(images: TestClient, tokens: Tokens) -> None:
    item = _pending(images, tokens)
    assert_problem(images.post(f"/v1/media/{item['id']}/transform-url", json={"width": 100}), 401)
    assert_problem(images.post(f"/v1/media/{item['id']}/transform-url", json={"width": 100},
                               headers=tokens.user()), 404)
    url = _path(_sign(images, item, tokens.header("USR-1"), width=100)["url"])
    assert_problem(images.get(url), 404, "image_not_found")  # a signature is not enough to see it
    owner = images.get(url, headers=tokens.header("USR-1"))
    assert owner.status_code == 200 and owner.headers["cache-control"] == "private, no-store"


@pytest.mark.parametrize(("options", "code"), [
    ({"width": 20000, "height": 100}, "validation_error"),
    ({}, "invalid_transform"),
    ({"width": 100, "fit": "stretch"}, "validation_error"),
    ({"width": 100, "dpr": 1.001}, "validation_error"),
    ({"width": 100, "extra": 1}, "validation_error"),
])
def test_bad_transform_options(images: TestClient, tokens: Tokens, options: dict, code: str) -> None:
    item = _approved(images, tokens)
    response = images.post(f"/v1/media/{item['id']}/transform-url", json=options, headers=tokens.user())
    assert response.status_code == 422, response.text
    assert response.json()["code"] in (code, "validation_error", "invalid_transform")


def test_output_and_source_limits(app_factory: AppFactory, tokens: Tokens) -> None:
    with TestClient(app_factory(image_sizes=SIZES, max_transform_side=500, max_transform_pixels=100_000)) as client:
        item = _approved(client, tokens)
        response = client.post(f"/v1/media/{item['id']}/transform-url", json={"width": 600}, headers=tokens.user())
        assert_problem(response, 422, "transform_too_large")
        response = client.post(f"/v1/media/{item['id']}/transform-url", json={"width": 400, "height": 400},
                               headers=tokens.user())
        assert_problem(response, 422, "transform_too_large")
        assert_problem(client.get(f"/v1/images/{item['public_id']}/original.webp"), 422, "transform_too_large")
        negotiated = client.get(f"/v1/images/{item['public_id']}/original", headers={"Accept": "image/webp"})
        assert negotiated.headers["content-type"] == "image/jpeg"  # too large to convert: as stored
    with TestClient(app_factory(image_sizes=SIZES, max_transform_source_pixels=1_000_000)) as client:
        item = _approved(client, tokens)
        response = client.post(f"/v1/media/{item['id']}/transform-url", json={"width": 100}, headers=tokens.user())
        assert_problem(response, 422, "source_too_large")


def test_a_render_past_its_deadline_is_stopped(app_factory: AppFactory, tokens: Tokens) -> None:
    with TestClient(app_factory(image_sizes=SIZES, render_deadline_seconds=0.0001)) as client:
        item = _approved(client, tokens)
        url = _path(_sign(client, item, width=1000, format="avif")["url"])
        response = client.get(url)
        assert_problem(response, 503, "render_timeout")
        assert response.headers["retry-after"]


def test_renders_beyond_the_limit_and_queue_are_answered_busy(app_factory: AppFactory, tokens: Tokens) -> None:
    with TestClient(app_factory(image_sizes=SIZES, max_concurrent_renders=1, render_queue=0)) as client:
        item = _approved(client, tokens)
        # Lossless PNGs of the whole picture: each render lasts long enough for the others to arrive meanwhile.
        urls = [_path(_sign(client, item, width=1800 - n, format="png")["url"]) for n in range(6)]
        answers: list = []
        threads = [threading.Thread(target=lambda u=u: answers.append(client.get(u))) for u in urls]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        statuses = sorted(a.status_code for a in answers)
        assert 200 in statuses and 503 in statuses, statuses
        busy = next(a for a in answers if a.status_code == 503)
        assert busy.json()["code"] == "render_busy" and busy.headers["retry-after"] == "1"


def test_concurrent_misses_render_once_across_processes(app_factory: AppFactory, tokens: Tokens,
                                                        tmp_path: Path) -> None:
    """Two apps over one database and store stand for two server processes."""
    with TestClient(app_factory(image_sizes=SIZES)) as first, TestClient(app_factory(image_sizes=SIZES)) as second:
        item = _approved(first, tokens)
        url = _path(_sign(first, item, width=1100, height=700, format="avif")["url"])
        before = set((tmp_path / "media").rglob("*.avif"))
        answers: list = []
        threads = [threading.Thread(target=lambda c=c: answers.append(c.get(url))) for c in (first, second) * 4]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert [a.status_code for a in answers] == [200] * 8, [a.text for a in answers]
        assert len({a.content for a in answers}) == 1
        assert len(set((tmp_path / "media").rglob("*.avif")) - before) == 1


def test_deleting_an_item_removes_its_stored_results(images: TestClient, tokens: Tokens, tmp_path: Path) -> None:
    item = _approved(images, tokens)
    images.get(_path(_sign(images, item, width=250, format="webp")["url"]))
    assert list((tmp_path / "media").rglob("*_t-*.webp"))
    assert images.delete(f"/v1/media/{item['id']}", headers=tokens.header("USR-2")).status_code == 204
    assert not list((tmp_path / "media").rglob("*_t-*.webp"))


def test_rejected_items_stop_being_delivered(images: TestClient, tokens: Tokens) -> None:
    item = _approved(images, tokens)
    url = _path(_sign(images, item, width=250, format="webp")["url"])
    assert images.get(url).status_code == 200
    decision = images.patch(f"/v1/media/{item['id']}", json={"moderation_status": "rejected"},
                            headers=tokens.moderator())
    assert decision.status_code == 200, decision.text
    assert_problem(images.get(url), 404, "image_not_found")
    assert_problem(images.get(f"/v1/images/{item['public_id']}/small"), 404, "image_not_found")


def test_a_videos_presets_are_its_stored_objects_with_ranges(images: TestClient, tokens: Tokens) -> None:
    video = CORPUS_DIR / "video/mp4_h264_example_640x480.mp4"
    response = upload(images, "/v1/media/posts/1/media", tokens.admin(), file=video)
    assert response.status_code == 201, response.text
    item = response.json()
    original = f"/v1/images/{item['public_id']}/original"
    whole = images.get(original, headers={**tokens.admin(), "Accept": "image/avif,image/webp,*/*"})
    assert whole.status_code == 200 and whole.headers["content-type"] == "video/mp4"
    assert whole.content == video.read_bytes() or len(whole.content) == item["byte_size"]
    assert "vary" not in whole.headers
    part = images.get(original, headers={**tokens.admin(), "Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == whole.content[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{len(whole.content)}"
    poster = images.get(f"/v1/images/{item['public_id']}/small", headers=tokens.admin())
    assert poster.status_code == 200 and poster.headers["content-type"] == "image/jpeg"
    assert_problem(images.post(f"/v1/media/{item['id']}/transform-url", json={"width": 100},
                               headers=tokens.admin()), 422, "not_an_image")


def test_every_format_of_a_preset_has_the_stored_presets_size(images: TestClient, tokens: Tokens) -> None:
    item = _approved(images, tokens)
    for name, formats in item["variants"].items():
        stored = formats["jpeg"]
        made = _picture(images.get(f"/v1/images/{item['public_id']}/{name}.webp"))
        assert made.size == (stored["width"], stored["height"]), name


@pytest.mark.parametrize("name", ["jpeg_progressive_big_icc.jpg", "jpeg_cmyk.jpg", "png_bigbuckbunny_diff_icc.png"])
def test_transforms_convert_embedded_profiles_as_the_upload_does(images: TestClient, tokens: Tokens,
                                                                 name: str) -> None:
    """A transform's colours match the presets made at upload (converted to sRGB by the pipeline)."""
    item = _approved(images, tokens, file=CORPUS_DIR / "images/good" / name)
    small = item["variants"]["small"]
    stored = _picture(images.get(_path(small["jpeg"]["url"] if "jpeg" in small else small["png"]["url"])))
    signed = _sign(images, item, width=stored.size[0], height=stored.size[1], fit="fill", format="png")
    made = _picture(images.get(_path(signed["url"])))
    assert made.size == stored.size
    difference = [abs(a - b) for a, b in zip(made.convert("RGB").resize((8, 8)).tobytes(),
                                             stored.convert("RGB").resize((8, 8)).tobytes(), strict=True)]
    assert sum(difference) / len(difference) < 6, difference
