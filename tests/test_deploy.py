"""deploy/compose.yaml (not run here: no Docker on this machine) is valid YAML whose MediaHub services set only
settings config.py knows, start after the migrations, and are health-checked with `mediahub ready`."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.main import get_command

from mediahub.cli import app
from mediahub.config import Settings

COMPOSE = Path(__file__).resolve().parents[1] / "deploy" / "compose.yaml"
MEDIAHUB_SERVICES = ("migrate", "api", "worker")


def _compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def _known_settings() -> set[str]:
    names = set()
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        names.add((alias if isinstance(alias, str) else name).upper())
    return names


def test_the_compose_file_runs_the_stores_the_api_the_worker_and_the_migrations() -> None:
    services = _compose()["services"]
    assert set(services) == {"postgres", "minio", "redis", "migrate", "api", "worker"}
    for name in MEDIAHUB_SERVICES:
        assert services[name]["command"][0] == "mediahub"
    assert services["migrate"]["command"] == ["mediahub", "db", "upgrade"]
    assert services["api"]["command"][:2] == ["mediahub", "serve"]
    assert services["worker"]["command"] == ["mediahub", "worker"]


def test_every_setting_the_compose_file_sets_is_a_known_one(monkeypatch: pytest.MonkeyPatch) -> None:
    services = _compose()["services"]
    known = _known_settings()
    for name in MEDIAHUB_SERVICES:
        environment = services[name]["environment"]
        assert isinstance(environment, dict) and environment, name
        assert set(environment) - known == set(), f"{name} sets settings config.py does not know"
        with monkeypatch.context() as env:  # and the values are valid, read as the process reads them
            for key, value in environment.items():
                env.setenv(key, value)
            assert Settings(_env_file=None).storage_type == "s3"


def test_the_tiers_start_after_the_migrations_and_are_probed_for_readiness() -> None:
    services = _compose()["services"]
    assert "ready" in get_command(app).commands
    for tier, role in (("api", "api"), ("worker", "worker")):
        service = services[tier]
        assert service["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
        probe = service["healthcheck"]["test"]
        assert probe[:5] == ["CMD", "mediahub", "ready", "--role", role]
        grace = float(service["stop_grace_period"].removesuffix("s"))
        assert grace > float(service["environment"]["SHUTDOWN_GRACE_SECONDS"]), "the orchestrator waits longer"
    for store in ("postgres", "minio", "redis"):
        assert services[store]["healthcheck"]["test"][0] == "CMD"


SECRETS = ("PASSWORD", "SECRET")


def test_no_secret_is_written_in_the_compose_file() -> None:
    """Passwords and keys are variables compose refuses to start without, never values a copy of the file shares."""
    services = _compose()["services"]
    found = {(name, key): value for name, service in services.items()
             for key, value in (service.get("environment") or {}).items() if any(s in key for s in SECRETS)}
    assert found and all(str(value).startswith("${") and ":?" in str(value) for value in found.values()), found
    database_url = services["api"]["environment"]["DATABASE_URL"]
    assert "${POSTGRES_PASSWORD:?" in database_url
    assert all(port.startswith("127.0.0.1:") for port in services["api"]["ports"]), "published on loopback only"
