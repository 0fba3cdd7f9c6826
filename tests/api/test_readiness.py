"""Readiness reflects what a process needs: `/readyz` checks the queue broker when QUEUE_URL is set and Redis
when the upload rate limit is counted there (beside the database, the store and the pixel workers), and
`mediahub ready --role worker|api` answers an orchestrator's exec probe by its exit status. Each dependency
fails through a public seam: a URL at a closed port, or a loopback proxy switched to refuse connections."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from mediahub.config import Settings

from tests.api.conftest import AppFactory, assert_problem, free_port, make_settings
from tests.reliability.harness import ROOT, FaultProxy, running, server_env
from tests.support.services import BROKERS, IN_CI, require_service


def _broker(name: str) -> tuple[int, str]:
    label, port, url = BROKERS[name]
    require_service(label, "127.0.0.1", port)
    return port, url


def _through(proxy: FaultProxy, url: str, port: int) -> str:
    return url.replace(f":{port}/", f":{proxy.port}/")


@pytest.mark.parametrize("broker", sorted(BROKERS))
def test_readyz_checks_the_queue_broker_and_recovers_with_it(app_factory: AppFactory, broker: str) -> None:
    port, url = _broker(broker)
    proxy = FaultProxy(port)
    try:
        app = app_factory(queue_url=_through(proxy, url, port), queue_name=f"mh-ready-{uuid.uuid4().hex[:8]}")
        with TestClient(app) as client:
            assert client.get("/readyz").json() == {"status": "ready", "features": {"moderation_checks": "off", "tagging": "off"}}
            proxy.set_mode("refuse")  # the broker stopped
            body = assert_problem(client.get("/readyz"), 503, "queue_unavailable")
            assert body["checks"] == {"database": "ok", "storage": "ok", "queue": "queue_unavailable", "pixels": "ok"}
            assert "proxy" not in body["detail"] and str(proxy.port) not in body["detail"]
            proxy.set_mode("pass")
            assert client.get("/readyz").status_code == 200
    finally:
        proxy.close()


def test_readyz_without_a_queue_does_not_check_one(app_factory: AppFactory) -> None:
    with TestClient(app_factory(media_root=Path("/proc/not-writable"))) as client:
        body = assert_problem(client.get("/readyz"), 503, "storage_unavailable")
        assert set(body["checks"]) == {"database", "storage", "pixels"}


def test_readyz_checks_the_rate_limit_redis(app_factory: AppFactory) -> None:
    port, url = _broker("redis")
    dead = app_factory(upload_rate_limit=5, rate_limit_redis_url=f"redis://127.0.0.1:{free_port()}/0")
    with TestClient(dead) as client:
        body = assert_problem(client.get("/readyz"), 503, "rate_limit_unavailable")
        assert body["checks"]["rate_limit"] == "rate_limit_unavailable" and body["checks"]["database"] == "ok"
    with TestClient(app_factory(upload_rate_limit=5, rate_limit_redis_url=url)) as client:
        assert client.get("/readyz").status_code == 200
    # Without a limit nothing is counted in Redis: its absence does not make the process unready.
    unused = app_factory(upload_rate_limit=0, rate_limit_redis_url=f"redis://127.0.0.1:{free_port()}/0")
    with TestClient(unused) as client:
        assert client.get("/readyz").status_code == 200


def _ready(settings: dict[str, str], *args: str) -> tuple[int, dict]:
    done = subprocess.run([sys.executable, "-m", "mediahub.cli", "ready", *args],
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT / "src"), **settings},
                          capture_output=True, text=True, timeout=120, check=False)
    return done.returncode, json.loads(done.stdout.strip().splitlines()[-1])


def _worker_settings(tmp_path: Path, **overrides: str) -> dict[str, str]:
    settings = make_settings(tmp_path)
    return {"DATABASE_URL": settings.database_url, "MEDIA_ROOT": str(settings.media_root),
            "TEMP_DIR": str(settings.temp_dir), "TAGGING_ENABLED": "false",
            **{k.upper(): v for k, v in overrides.items()}}


def test_ready_worker_exits_by_what_a_worker_needs(tmp_path: Path) -> None:
    _, url = _broker("rabbitmq")
    off = {"moderation_checks": "off", "tagging": "off"}
    assert _ready(_worker_settings(tmp_path), "--role", "worker") == (
        0, {"role": "worker", "ready": True, "checks": {"database": "ok", "storage": "ok"}, "features": off})
    assert _ready(_worker_settings(tmp_path, queue_url=url), "--role", "worker") == (
        0, {"role": "worker", "ready": True, "checks": {"database": "ok", "storage": "ok", "queue": "ok"},
            "features": off})
    closed = f"amqp://guest:guest@127.0.0.1:{free_port()}/"
    code, report = _ready(_worker_settings(tmp_path, queue_url=closed), "--role", "worker")
    assert code == 1 and report["checks"]["queue"] == "queue_unavailable"
    dead_database = f"postgresql+psycopg://mediahub@127.0.0.1:{free_port()}/mediahub"
    code, report = _ready(_worker_settings(tmp_path, database_url=dead_database), "--role", "worker")
    assert code == 1 and report["checks"] == {"database": "database_unavailable", "storage": "ok"}


def test_ready_api_asks_the_servers_readyz(tmp_path: Path) -> None:
    env = server_env(f"sqlite:///{tmp_path / 'ready.db'}", media_root=tmp_path / "media", pixel_workers=1,
                     temp_dir=tmp_path / "spool")
    with running(env, tmp_path / "server") as server:
        assert _ready({}, "--role", "api", "--url", server.url) == (
            0, {"role": "api", "ready": True, "checks": {"server": "ok"},
                "features": {"moderation_checks": "off", "tagging": "off"}})
    code, report = _ready({}, "--role", "api", "--url", server.url)  # stopped
    assert code == 1 and report["checks"] == {"server": "ConnectError"}


def test_ready_worker_is_not_ready_with_an_altered_nsfw_model(tmp_path: Path) -> None:
    """A worker runs the moderation checks: a model that fails its SHA-256 is a broken deploy (it approves nothing)."""
    from mediahub.pipeline.nsfw import MODEL_TAMPERED, bundled_model

    altered = tmp_path / "open-nsfw.onnx"
    altered.write_bytes(bundled_model().read_bytes()[:-1] + b"\0")
    code, report = _ready(_worker_settings(tmp_path, moderation_checks="nsfw", nsfw_model_file=str(altered)),
                          "--role", "worker")
    assert code == 1 and report["checks"]["moderation_checks"] == MODEL_TAMPERED
    assert report["features"] == {"moderation_checks": MODEL_TAMPERED, "tagging": "off"}
    assert _ready(_worker_settings(tmp_path, moderation_checks="nsfw"), "--role", "worker") == (
        0, {"role": "worker", "ready": True, "features": {"moderation_checks": "ok", "tagging": "off"},
            "checks": {"database": "ok", "storage": "ok", "moderation_checks": "ok"}})


def test_ready_reports_tagging_without_being_made_unready_by_it(tmp_path: Path) -> None:
    """Tagging is optional: a missing or altered model is reported, and the process is ready all the same."""
    from mediahub.pipeline.tagger import build_tagger

    empty = tmp_path / "no-models"
    empty.mkdir()
    missing = _ready(_worker_settings(tmp_path, tagging_enabled="true", models_dir=str(empty)), "--role", "worker")
    assert missing == (0, {"role": "worker", "ready": True, "checks": {"database": "ok", "storage": "ok"},
                           "features": {"moderation_checks": "off", "tagging": "model_missing"}})
    installed = ROOT / "var" / "models"
    if build_tagger(Settings(_env_file=None, models_dir=installed))[1] != "ok":
        (pytest.fail if IN_CI else pytest.skip)(f"the tagging model is not installed in {installed}: `make install`")
    altered = tmp_path / "altered-models"
    altered.mkdir()
    for model in installed.iterdir():
        (altered / model.name).write_bytes(model.read_bytes())
    onnx = next(altered.glob("*.onnx"))
    onnx.write_bytes(onnx.read_bytes()[:-1] + b"\0")
    for directory, status in ((installed, "ok"), (altered, "model_mismatch")):
        code, report = _ready(_worker_settings(tmp_path, tagging_enabled="true", models_dir=str(directory)),
                              "--role", "worker")
        assert (code, report["ready"], report["features"]["tagging"]) == (0, True, status)
