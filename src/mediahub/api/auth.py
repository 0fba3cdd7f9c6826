"""Bearer JWTs: verifying callers, and minting dev tokens for the CLI.

Exactly one algorithm is accepted, the configured one, which refuses `alg:
none` and HS/RS key confusion. `exp` and `sub` are required; `iss` and `aud`
are checked when configured. Tokens and keys are never logged.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import jwt

from mediahub.api.schemas import has_control_characters
from mediahub.config import InsecureSettings, Settings
from mediahub.errors import MediaHubError, Unauthenticated
from mediahub.media.access import EntityRef, Principal

SYMMETRIC = frozenset({"HS256", "HS384", "HS512"})
LEEWAY_SECONDS = 30  # clock skew between the token issuer and this service


def _invalid(reason: str) -> Unauthenticated:
    return Unauthenticated(f"invalid bearer token: {reason}", code="invalid_token")


def _hmac_secret(settings: Settings) -> str:
    if settings.jwt_secret is None:
        raise InsecureSettings("JWT_SECRET is not set")
    return settings.jwt_secret.get_secret_value()


def verification_key(settings: Settings) -> str | bytes:
    """The HMAC secret, or the PEM public key for RS256/ES256 (read once at start-up)."""
    if settings.jwt_algorithm in SYMMETRIC:
        return _hmac_secret(settings)
    if settings.jwt_public_key_file is None:
        raise ValueError(f"JWT_ALGORITHM={settings.jwt_algorithm} needs JWT_PUBLIC_KEY_FILE")
    return settings.jwt_public_key_file.read_bytes()


def _string_list(claims: dict[str, Any], name: str) -> list[str]:
    value = claims.get(name, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _invalid(f"claim {name!r} must be a list of strings")
    return value


def _normalised_grants(grants: Iterable[str]) -> frozenset[str]:
    """Grants as entity labels with canonical kind names (`properties:1` -> `property:1`,
    `communities:C1/amenities:A1` -> `community:C1/amenity:A1`); malformed ones, unknown kinds
    and nested kinds without their parent grant nothing."""
    result = set()
    for grant in grants:
        try:
            result.add(EntityRef.parse_label(grant).label)
        except MediaHubError:
            continue
    return frozenset(result)


class TokenVerifier:
    def __init__(self, settings: Settings) -> None:
        self.key = verification_key(settings)
        self.algorithm = settings.jwt_algorithm
        self.issuer = settings.jwt_issuer
        self.audience = settings.jwt_audience

    def principal(self, token: str) -> Principal:
        return self.session(token)[0]

    def session(self, token: str) -> tuple[Principal, int]:
        """The caller a token names and when it expires (Unix seconds): a library session lasts that long."""
        required = ["exp", "sub"] + (["iss"] if self.issuer else []) + (["aud"] if self.audience else [])
        try:
            claims = jwt.decode(
                token,
                self.key,
                algorithms=[self.algorithm],
                issuer=self.issuer,
                audience=self.audience,
                leeway=LEEWAY_SECONDS,
                options={"require": required, "verify_aud": self.audience is not None},
            )
        except jwt.ExpiredSignatureError:
            raise _invalid("expired") from None
        except jwt.InvalidTokenError as exc:
            # PyJWT's messages name the failed check, never the token or the key.
            raise _invalid(str(exc) or type(exc).__name__) from None
        sub = claims["sub"]
        if not isinstance(sub, str) or not 0 < len(sub) <= 128 or has_control_characters(sub):
            raise _invalid("claim 'sub' must be a string of 1-128 characters without control characters")
        verified = claims.get("verified", False)
        if not isinstance(verified, bool):
            raise _invalid("claim 'verified' must be a boolean")
        principal = Principal(
            sub=sub,
            roles=frozenset(_string_list(claims, "roles")),
            verified=verified,
            grants=_normalised_grants(_string_list(claims, "grants")),
        )
        return principal, int(claims["exp"])


def issue_token(settings: Settings, sub: str, *, roles: Iterable[str] = (), verified: bool = False,
                grants: Iterable[str] = (), ttl: int = 3600) -> str:
    """A token this service accepts; symmetric algorithms only (asymmetric needs the issuer's private key)."""
    if settings.jwt_algorithm not in SYMMETRIC:
        raise ValueError(f"cannot mint {settings.jwt_algorithm} tokens: that needs the issuer's private key")
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": sub, "roles": list(roles), "verified": verified, "grants": list(grants), "iat": now, "exp": now + ttl,
    }
    if settings.jwt_issuer:
        claims["iss"] = settings.jwt_issuer
    if settings.jwt_audience:
        claims["aud"] = settings.jwt_audience
    return jwt.encode(claims, _hmac_secret(settings), algorithm=settings.jwt_algorithm)
