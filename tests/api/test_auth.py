"""Bearer JWT verification: anything but a valid token of the configured algorithm is 401."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient

from tests.api.conftest import JWT_SECRET, AppFactory, assert_problem

PROBE = "/v1/media/moderation/queue"  # needs a signed-in caller; a plain user then gets 403
ISSUER, AUDIENCE = "https://id.example.test", "mediahub"


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _claims(**overrides: object) -> dict:
    claims = {"sub": "USR-1", "roles": ["user"], "exp": int(time.time()) + 600, "iss": ISSUER, "aud": AUDIENCE}
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


@pytest.fixture(scope="module")
def rsa_keys() -> tuple[bytes, bytes]:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption())
    public_pem = private.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo)
    return private_pem, public_pem


@pytest.fixture
def hs_client(app_factory: AppFactory) -> Iterator[TestClient]:
    with TestClient(app_factory(jwt_issuer=ISSUER, jwt_audience=AUDIENCE)) as client:
        yield client


@pytest.fixture
def rs_client(app_factory: AppFactory, rsa_keys: tuple[bytes, bytes], tmp_path: Path) -> Iterator[TestClient]:
    key_file = tmp_path / "jwt-public.pem"
    key_file.write_bytes(rsa_keys[1])
    with TestClient(app_factory(jwt_algorithm="RS256", jwt_public_key_file=key_file)) as client:
        yield client


def _call(client: TestClient, token: str, scheme: str = "Bearer"):
    return client.get(PROBE, headers={"Authorization": f"{scheme} {token}"})


def _hs(claims: dict, secret: str = JWT_SECRET) -> str:
    return jwt.encode(claims, secret, algorithm="HS256")


def test_a_valid_token_is_accepted(hs_client: TestClient) -> None:
    assert_problem(_call(hs_client, _hs(_claims())), 403, "moderator_required")


@pytest.mark.parametrize(
    "token",
    [
        pytest.param(_hs(_claims(exp=int(time.time()) - 3600)), id="expired"),
        pytest.param(_hs(_claims(exp=None)), id="no-exp"),
        pytest.param(_hs(_claims(sub=None)), id="no-sub"),
        pytest.param(_hs(_claims(aud="someone-else")), id="wrong-aud"),
        pytest.param(_hs(_claims(aud=None)), id="no-aud"),
        pytest.param(_hs(_claims(iss="https://evil.test")), id="wrong-iss"),
        pytest.param(_hs(_claims(iss=None)), id="no-iss"),
        pytest.param(_hs(_claims(), secret="another-secret-of-sufficient-length!!"), id="bad-signature"),
        pytest.param(f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(_claims())}.", id="alg-none"),
        pytest.param(_hs(_claims(roles="admin")), id="roles-not-a-list"),
        pytest.param(_hs(_claims(verified="yes")), id="verified-not-bool"),
        pytest.param(_hs(_claims(sub=123)), id="sub-not-a-string"),
        pytest.param("not.a.jwt", id="garbage"),
        pytest.param("", id="empty"),
    ],
)
def test_bad_tokens_are_401(hs_client: TestClient, token: str) -> None:
    response = _call(hs_client, token)
    assert_problem(response, 401)
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert token == "" or token not in response.text  # never echoed back


def test_other_schemes_and_missing_headers(hs_client: TestClient) -> None:
    assert_problem(_call(hs_client, "dXNlcjpwYXNz", scheme="Basic"), 401, "invalid_token")
    missing = hs_client.get(PROBE)
    assert_problem(missing, 401, "missing_token")
    assert missing.headers["www-authenticate"] == "Bearer"
    # Optional auth never downgrades a bad token to anonymous.
    assert_problem(hs_client.get("/v1/media/entity/property/1", headers={"Authorization": "Bearer x"}), 401)


def test_rs256_accepts_its_own_tokens(rs_client: TestClient, rsa_keys: tuple[bytes, bytes]) -> None:
    token = jwt.encode(_claims(iss=None, aud=None), rsa_keys[0], algorithm="RS256")
    assert_problem(_call(rs_client, token), 403, "moderator_required")


def test_hs_rs_confusion_is_refused(rs_client: TestClient, rsa_keys: tuple[bytes, bytes]) -> None:
    """HS256 signed with the server's public key PEM as the HMAC secret (PyJWT refuses to make one)."""
    header, payload = _b64({"alg": "HS256", "typ": "JWT"}), _b64(_claims(iss=None, aud=None))
    mac = hmac.new(rsa_keys[1], f"{header}.{payload}".encode(), hashlib.sha256).digest()
    forged = f"{header}.{payload}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"
    assert_problem(_call(rs_client, forged), 401, "invalid_token")
    assert_problem(_call(rs_client, _hs(_claims(iss=None, aud=None))), 401, "invalid_token")
