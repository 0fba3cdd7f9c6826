"""Opaque page cursors: a listing's key (a short JSON list) in URL-safe base64, and back.

A cursor says where the next page starts; a client hands it back untouched. Anything that does not decode to
a key the listing accepts is 422 `invalid_cursor`, never a database error.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from typing import Any, TypeVar

from mediahub.errors import InvalidInput

CURSOR_MAX = 200  # characters of a page cursor; one made here is far shorter
K = TypeVar("K")


def encode_cursor(key: list[Any]) -> str:
    text = json.dumps(key, separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, valid: Callable[[list[Any]], K | None]) -> K:
    """The key in `cursor` as `valid` makes it of the decoded list (None: not a key of this listing)."""
    invalid = InvalidInput("the cursor is not one a listing gave: start again from the first page",
                           code="invalid_cursor")
    if not cursor or len(cursor) > CURSOR_MAX or not cursor.isascii():
        raise invalid
    try:
        key = json.loads(base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True))
    except (binascii.Error, ValueError, RecursionError):
        raise invalid from None
    found = valid(key) if isinstance(key, list) else None
    if found is None:
        raise invalid
    return found
