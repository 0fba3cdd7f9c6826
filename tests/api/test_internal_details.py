"""No internal path, URL or library message reaches a caller: a failing store or database is
answered with a fixed sentence (the details go to the server log), and /metrics needs
METRICS_TOKEN."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from mediahub.api.app import create_app
from tests.api.conftest import HOPPER, AppFactory, Tokens, assert_problem, free_port, make_settings, upload
from tests.support.corpus import CORPUS_DIR

LIBRARY_WORDS = ("Errno", "errno", "psycopg", "pymysql", "sqlalchemy", "OperationalError", "Connection refused",
                 "Not a directory", "File exists", "Traceback")


def _assert_clean(text: str, *secrets: str) -> None:
    leaked = [word for word in (*secrets, *LIBRARY_WORDS) if word in text]
    assert leaked == [], text


def test_a_broken_store_is_503_without_its_path(app_factory: AppFactory, tokens: Tokens, tmp_path: Path,
                                                caplog: pytest.LogCaptureFixture) -> None:
    blocked = tmp_path / "media-root-is-a-file"
    blocked.write_bytes(b"")
    with TestClient(app_factory(media_root=blocked)) as client:
        ready = client.get("/readyz")
        assert_problem(ready, 503, "storage_unavailable")
        assert ready.json()["checks"] == {"database": "ok", "storage": "storage_unavailable", "pixels": "ok"}
        uploaded = upload(client, "/v1/media/users/USR-1/avatar", tokens.header("USR-1"))
        assert_problem(uploaded, 503, "storage_unavailable")
        batch = client.post("/v1/media/batch/upload", headers=tokens.admin(),
                            files=[("files", ("a.jpg", HOPPER.read_bytes(), "image/jpeg"))],
                            data={"entity_type": "property", "entity_id": "123", "entity_field": "gallery"})
        assert batch.json()["results"][0]["error"]["code"] == "storage_unavailable"
        for response in (ready, uploaded, batch):
            _assert_clean(response.text, str(tmp_path), blocked.name)
    # The operator still learns what failed, from the log.
    assert any(blocked.name in record.getMessage() for record in caplog.records)


def test_an_unreachable_bucket_is_503_without_its_endpoint(app_factory: AppFactory) -> None:
    port = free_port()  # nothing listens there
    app = app_factory(storage_type="s3", s3_endpoint_url=f"http://127.0.0.1:{port}", s3_bucket_name="secret-bucket",
                      aws_access_key_id="testing", aws_secret_access_key="testing", s3_timeout_seconds=2)
    with TestClient(app) as client:
        ready = client.get("/readyz")
        assert_problem(ready, 503, "storage_unavailable")
        _assert_clean(ready.text, str(port), "127.0.0.1", "secret-bucket", "endpoint", "botocore")


@pytest.mark.parametrize("scheme", ["postgresql+psycopg", "mysql+pymysql"])
def test_a_dead_database_is_503_without_its_url(tmp_path: Path, tokens: Tokens, scheme: str) -> None:
    port = free_port()  # nothing listens there
    url = f"{scheme}://dbuser:hunter2@127.0.0.1:{port}/secret_db_name"
    settings = make_settings(tmp_path, database_url=url)
    with TestClient(create_app(settings)) as client:
        responses = [client.get("/readyz"), client.get("/v1/media/1"), client.get("/v1/media/entity/property/123"),
                     client.get("/v1/media/public/abcdef", headers=tokens.user())]
        for response in responses:
            assert_problem(response, 503, "database_unavailable")
            _assert_clean(response.text, str(port), "127.0.0.1", "secret_db_name", "dbuser", "hunter2",
                          scheme.split("+")[0], scheme.split("+")[1], str(tmp_path))


def test_a_corrupt_video_is_refused_without_the_spool_path(client: TestClient, tokens: Tokens,
                                                            tmp_path: Path) -> None:
    good = (CORPUS_DIR / "video/mp4_h264_example_640x480.mp4").read_bytes()
    garbage = good[:40] + b"\x00garbage" * 500  # an MP4 signature, then nothing a demuxer can read
    response = client.post("/v1/media/posts/1/media", headers=tokens.admin(), files={"file": ("a.mp4", garbage)})
    assert_problem(response, 422, "corrupt_video")
    _assert_clean(response.text, str(tmp_path), "upload-")


@pytest.mark.parametrize("name", ["images/good/jpeg_hopper.jpg", "images/good/tiff_hopper.tif",
                                  "images/good/gif_transparent.gif", "images/good/heif_minimal_64x64.heif"])
def test_a_corrupt_image_is_refused_without_the_spool_path(client: TestClient, tokens: Tokens, tmp_path: Path,
                                                            name: str) -> None:
    corrupt = (CORPUS_DIR / name).read_bytes()[:64] + bytes(512)  # the signature, then zeros
    response = client.post("/v1/media/posts/1/media", headers=tokens.admin(), files={"file": ("a.bin", corrupt)})
    assert 400 <= response.status_code < 500, response.text
    _assert_clean(response.text, str(tmp_path), "upload-")


@pytest.mark.parametrize(("message", "reason"), [
    ("cannot identify image file '/tmp/a dir/spool/upload-x1'", "cannot identify image file the file"),
    ('VipsForeignLoad: "/tmp/q r" is not a known file format', "VipsForeignLoad: the file is not a known file format"),
    ("frame 1/2 unreadable at /var/lib/x.jpg, stopping", "frame 1/2 unreadable at the file, stopping"),
    ("video is truncated: 91 of 251 frames present", "video is truncated: 91 of 251 frames present"),
])
def test_library_reasons_lose_their_paths(message: str, reason: str) -> None:
    from mediahub.errors import library_reason  # the seam every decoder message passes

    assert library_reason(OSError(message)) == reason


def test_metrics_answer_404_without_a_metrics_token(client: TestClient, tokens: Tokens) -> None:
    for headers in ({}, tokens.admin(), {"Authorization": "Bearer anything"}):
        assert_problem(client.get("/metrics", headers=headers), 404)


def test_metrics_need_the_metrics_token(app_factory: AppFactory, tokens: Tokens) -> None:
    secret = "a-scrape-token-only-prometheus-knows"
    with TestClient(app_factory(metrics_token=secret)) as client:
        for headers in ({}, tokens.admin(), {"Authorization": "Bearer wrong"}, {"Authorization": secret},
                        {"Authorization": f"Bearer {secret}x"}):
            response = client.get("/metrics", headers=headers)
            assert_problem(response, 401)
            assert "mediahub_http_requests_total" not in response.text
        scraped = client.get("/metrics", headers={"Authorization": f"Bearer {secret}"})
        assert scraped.status_code == 200 and "mediahub_http_requests_total" in scraped.text
