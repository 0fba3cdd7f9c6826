"""No secret lives in the source: production refuses to serve on a missing or weak JWT secret,
and the explicit development mode (`make run`) generates one per install, binds to loopback
only, and says so loudly."""

from __future__ import annotations

import os
import re
import secrets
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests

from mediahub.api.app import create_app
from mediahub.config import DEV_SECRET_FILE, InsecureSettings, Settings, secured
from mediahub.db import migrate
from tests.reliability.harness import ServerProcess, server_env
from tests.support.s3_server import free_port

OLD_SOURCE_DEFAULT = "dev-only-insecure-secret-set-JWT_SECRET-in-production"
STRONG = secrets.token_urlsafe(40)
MEDIAHUB = [sys.executable, "-m", "mediahub.cli"]
ROOT = Path(__file__).resolve().parents[1]


def _settings(**values: Any) -> Settings:
    return Settings(_env_file=None, **values)


@pytest.mark.parametrize("secret", [None, "", "short-secret", OLD_SOURCE_DEFAULT, "a" * 64, "ab" * 40,
                                    "0123456789abcdef" * 2, "changeme-" * 4, "your-256-bit-secret-your-256-bit-secret"],
                         ids=["unset", "empty", "short", "old-source-default", "one-letter", "two-letters",
                              "hex-digits-twice", "phrase-repeated", "phrase-and-a-half"])
def test_production_refuses_a_missing_or_weak_jwt_secret(secret: str | None) -> None:
    settings = _settings(jwt_secret=secret)
    with pytest.raises(InsecureSettings, match="JWT_SECRET"):
        secured(settings)
    with pytest.raises(InsecureSettings, match="JWT_SECRET"):
        create_app(settings)


def test_production_accepts_a_strong_secret() -> None:
    assert secured(_settings(jwt_secret=STRONG)).jwt_secret.get_secret_value() == STRONG


def test_asymmetric_algorithms_need_a_public_key_and_a_url_signing_secret(tmp_path: Path) -> None:
    with pytest.raises(InsecureSettings, match="JWT_PUBLIC_KEY_FILE"):
        secured(_settings(jwt_algorithm="RS256"))
    key = tmp_path / "public.pem"
    key.write_text("-----BEGIN PUBLIC KEY-----\n")
    with pytest.raises(InsecureSettings, match="URL_SIGNING_SECRET"):
        secured(_settings(jwt_algorithm="RS256", jwt_public_key_file=key))
    with pytest.raises(InsecureSettings, match="URL_SIGNING_SECRET"):
        secured(_settings(jwt_algorithm="RS256", jwt_public_key_file=key, url_signing_secret="tiny"))
    assert secured(_settings(jwt_algorithm="RS256", jwt_public_key_file=key, url_signing_secret=STRONG))


def test_a_weak_url_signing_secret_is_refused_beside_a_strong_jwt_secret() -> None:
    with pytest.raises(InsecureSettings, match="URL_SIGNING_SECRET"):
        secured(_settings(jwt_secret=STRONG, url_signing_secret="x" * 40))


def test_development_mode_generates_one_private_secret_per_install(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    first = secured(_settings(mediahub_env="development"))
    path = tmp_path / DEV_SECRET_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    secret = first.jwt_secret.get_secret_value()
    assert len(secret) >= 32 and secret != OLD_SOURCE_DEFAULT
    assert secured(_settings(mediahub_env="development")).jwt_secret.get_secret_value() == secret  # reused
    assert first.signing_key == secret.encode()  # signed URLs use it too (no URL_SIGNING_SECRET set)
    monkeypatch.chdir(tmp_path / "var")  # another install (another working directory): another secret
    assert secured(_settings(mediahub_env="development")).jwt_secret.get_secret_value() != secret
    (tmp_path / "var" / DEV_SECRET_FILE).write_text("\n")  # emptied by hand: refused, never used as ""
    with pytest.raises(InsecureSettings, match="delete it"):
        secured(_settings(mediahub_env="development"))


def _cli(workdir: Path, *args: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k not in {"JWT_SECRET", "MEDIAHUB_ENV", "URL_SIGNING_SECRET"}}
    full_env.update({"PYTHONPATH": str(ROOT / "src"), "DATABASE_URL": f"sqlite:///{workdir / 'cli.db'}", **env})
    return subprocess.run([*MEDIAHUB, *args], cwd=workdir, env=full_env, capture_output=True, text=True,
                          timeout=timeout)


def test_serve_refuses_to_start_without_a_jwt_secret(tmp_path: Path) -> None:
    try:
        result = _cli(tmp_path, "serve", "--port", str(free_port()), timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("the server started without JWT_SECRET")
    assert result.returncode == 2
    assert "JWT_SECRET" in result.stderr
    weak = _cli(tmp_path, "serve", "--port", str(free_port()), JWT_SECRET=OLD_SOURCE_DEFAULT)
    assert weak.returncode == 2 and "JWT_SECRET" in weak.stderr
    token = _cli(tmp_path, "token", "--sub", "ADM-1", "--role", "admin")
    assert token.returncode == 2 and "JWT_SECRET" in token.stderr and not token.stdout


def test_development_mode_binds_to_loopback_only(tmp_path: Path) -> None:
    result = _cli(tmp_path, "serve", "--host", "0.0.0.0", "--port", str(free_port()), MEDIAHUB_ENV="development")
    assert result.returncode == 2 and "127.0.0.1" in result.stderr


def test_development_server_and_token_share_the_generated_secret(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("JWT_SECRET", "MEDIAHUB_ENV", "URL_SIGNING_SECRET"):
        monkeypatch.delenv(name, raising=False)
    env = server_env(f"sqlite:///{tmp_path / 'dev.db'}", media_root=tmp_path / "media", mediahub_env="development")
    del env["JWT_SECRET"]
    workdir = tmp_path / "install"
    workdir.mkdir()
    migrate.upgrade(env["DATABASE_URL"])
    server = ServerProcess(env, workdir).start()
    try:
        assert "DEVELOPMENT MODE" in server.log()
        # The sign-in hint: the library's address and a token for it, which the library takes.
        hint = re.search(r"Library: (http://\S+/library/login)\..*?\n(\S+)\n", server.log(), re.S)
        assert hint, server.log()
        login = requests.get(hint.group(1), timeout=30)
        form_csrf = re.search(r'name="csrf_token" value="(\w+)"', login.text).group(1)
        signed_in = requests.post(hint.group(1), data={"token": hint.group(2), "csrf_token": form_csrf},
                                  cookies=login.cookies, allow_redirects=False, timeout=30)
        assert signed_in.status_code == 303 and "mediahub_session" in signed_in.cookies
        assert stat.S_IMODE((workdir / DEV_SECRET_FILE).stat().st_mode) == 0o600
        minted = _cli(workdir, "token", "--sub", "ADM-1", "--role", "admin", MEDIAHUB_ENV="development")
        assert minted.returncode == 0, minted.stderr
        token = minted.stdout.strip()
        forged = jwt.encode({"sub": "ADM-1", "roles": ["admin"], "exp": 4_000_000_000}, OLD_SOURCE_DEFAULT,
                            algorithm="HS256")
        analytics = f"{server.url}/v1/media/analytics/storage"
        assert requests.get(analytics, headers={"Authorization": f"Bearer {token}"}, timeout=30).status_code == 200
        assert requests.get(analytics, headers={"Authorization": f"Bearer {forged}"}, timeout=30).status_code == 401
        server.stop()
        server.start()  # the same install after a restart: the same secret, so the token still works
        assert requests.get(f"{server.url}/v1/media/analytics/storage", headers={"Authorization": f"Bearer {token}"}, timeout=30).status_code == 200
    finally:
        server.stop()
