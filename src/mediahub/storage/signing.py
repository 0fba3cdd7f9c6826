"""HMAC signatures binding a key to an expiry, for stores without presigned URLs.

Local files have no S3-style presigned URL, so whoever serves them signs the key
and an expiry with the service secret and checks both with `verify` before
streaming, so a signed link cannot be re-pointed or extended.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time


def _encode(text: str) -> bytes:
    """UTF-8 that never raises: URL parts can carry lone surrogates after decoding."""
    return text.encode("utf-8", "surrogatepass")


def sign(key: str, expires: int, secret: bytes) -> str:
    """URL-safe signature binding the key to its expiry (unix seconds)."""
    mac = hmac.new(secret, _encode(f"{key}\n{expires}"), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode("ascii")


def verify(key: str, expires: int, signature: str, secret: bytes, now: float | None = None) -> bool:
    """True only for an unexpired URL whose key, expiry and signature all match."""
    current = time.time() if now is None else now
    if expires < current:
        return False
    return hmac.compare_digest(_encode(sign(key, expires, secret)), _encode(signature))
