"""Key safety: the only thing storage knows of keys.

Storage is bytes by key; which keys exist (the layout) is decided above it,
in `mediahub.media.keys`. Every backend checks a key here before using it.
"""

from __future__ import annotations

import re

from mediahub.errors import InvalidInput

KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)*\Z")  # \Z: no trailing newline
MAX_KEY_LENGTH = 512


def check_key(key: str) -> str:
    """Refuse anything that could leave its prefix: `..`, absolute paths, odd characters."""
    if (
        not isinstance(key, str)
        or len(key) > MAX_KEY_LENGTH
        or not KEY_RE.match(key)
        or any(part in {".", ".."} or part.startswith("..") for part in key.split("/"))
    ):
        raise InvalidInput(f"invalid storage key {key[:80]!r}", code="invalid_key")
    return key
