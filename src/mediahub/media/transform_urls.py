"""Signed transform URLs: `{IMAGES_PATH}/{public_id}/t/{signature}/{options}.{ext}[?expires=unix]`.

The signature is an HMAC-SHA256 (URL-safe base64, unpadded) over the item's public id, the
canonical options, the output extension and the expiry, so changing any of them (or moving the
signature to another item) breaks it. The first of the transform keys signs; every key verifies, so
keys rotate without breaking URLs handed out under the previous one. Checked before the item is
looked up, so a forged URL learns nothing about the item.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

UNSIGNED = "_"  # the signature segment of an unsigned transform URL (UNSIGNED_TRANSFORMS)
# What a transform URL may end in: a format's extension, or `auto` (negotiated by Accept).
EXTENSION_FORMATS = {"jpg": "jpeg", "png": "png", "webp": "webp", "avif": "avif", "auto": None}
FORMAT_EXTENSIONS = {"jpeg": "jpg", "png": "png", "webp": "webp", "avif": "avif"}


def _message(public_id: str, options: str, extension: str, expires: int | None) -> bytes:
    return f"{public_id}/{options}.{extension}/{'' if expires is None else expires}".encode("utf-8", "surrogatepass")


def sign(key: bytes, public_id: str, options: str, extension: str, expires: int | None) -> str:
    mac = hmac.new(key, _message(public_id, options, extension, expires), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode("ascii")


def verify(keys: tuple[bytes, ...], signature: str, public_id: str, options: str, extension: str,
           expires: int | None, now: float | None = None) -> bool:
    """True for an unexpired URL signed by any of `keys` over exactly these parts."""
    if expires is not None and expires < (time.time() if now is None else now):
        return False
    given = signature.encode("ascii", "replace")
    # Every key is tried, whichever matches: the time taken does not tell which key signed.
    matches = [hmac.compare_digest(sign(key, public_id, options, extension, expires).encode(), given) for key in keys]
    return any(matches)
