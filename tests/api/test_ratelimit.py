"""UPLOAD_RATE_LIMIT across processes: two app instances sharing one Redis window."""

from __future__ import annotations

import uuid

import pytest
import redis
from fastapi.testclient import TestClient

from tests.api.conftest import AppFactory, Tokens, assert_problem, free_port, upload

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
def prefix() -> str:
    """A key prefix of this test's own, removed afterwards."""
    name = f"mediahub-test-{uuid.uuid4().hex}"
    yield name
    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(f"{name}:*"):
        client.delete(key)


@pytest.mark.parametrize("setting", ["rate_limit_redis_url", "queue_url"])
def test_two_instances_share_one_window(app_factory: AppFactory, tokens: Tokens, prefix: str, setting: str) -> None:
    settings = {setting: REDIS_URL, "rate_limit_prefix": prefix, "upload_rate_limit": 3}
    if setting == "queue_url":
        settings["queue_name"] = prefix  # the jobs of this test go nowhere shared
    headers = tokens.header("USR-1")
    with TestClient(app_factory(**settings)) as first, TestClient(app_factory(**settings)) as second:
        assert upload(first, "/v1/media/users/USR-1/cover", headers).status_code == 201
        assert upload(second, "/v1/media/users/USR-1/cover", headers).status_code == 201
        assert upload(first, "/v1/media/users/USR-1/cover", headers).status_code == 201
        response = upload(second, "/v1/media/users/USR-1/cover", headers)
        body = assert_problem(response, 429, "rate_limited")
        assert 1 <= int(response.headers["retry-after"]) <= 60 and body["limit"] == 3
        # A batch's files count in the shared window too, and another principal has a window of its own.
        batch = second.post("/v1/media/batch/upload", headers=tokens.header("USR-2"),
                            data={"entity_type": "user", "entity_id": "USR-2", "entity_field": "cover"},
                            files=[("files", ("a.jpg", b"x", "image/jpeg"))] * 4)
        assert_problem(batch, 429, "rate_limited")
        assert_problem(upload(first, "/v1/media/users/USR-2/cover", tokens.header("USR-2")), 429, "rate_limited")


def test_an_unreachable_redis_falls_back_to_the_process_window(app_factory: AppFactory, tokens: Tokens,
                                                               prefix: str) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    with TestClient(app_factory(rate_limit_redis_url=dead, rate_limit_prefix=prefix, upload_rate_limit=2)) as client:
        headers = tokens.header("USR-1")
        assert [upload(client, "/v1/media/users/USR-1/cover", headers).status_code for _ in range(2)] == [201, 201]
        assert_problem(upload(client, "/v1/media/users/USR-1/cover", headers), 429, "rate_limited")
