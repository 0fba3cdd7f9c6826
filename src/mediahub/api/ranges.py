"""HTTP Range and If-None-Match for file responses (RFC 9110), single ranges only."""

from __future__ import annotations

import re

_RANGE_RE = re.compile(r"^bytes=(\d*)-(\d*)$")


class RangeNotSatisfiable(Exception):
    pass


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(first, last) inclusive for one satisfiable range; None to send the whole object.

    Malformed and multi-range headers are ignored (the whole object is a valid
    answer to them); a well-formed range that misses the object raises.
    """
    if not header:
        return None
    match = _RANGE_RE.match(header.strip())
    if not match or match[1] == match[2] == "":
        return None
    first, last = match[1], match[2]
    if first == "":  # suffix: the last N bytes
        length = int(last)
        if length == 0:
            raise RangeNotSatisfiable
        return max(0, size - length), size - 1
    start = int(first)
    end = size - 1 if last == "" else min(int(last), size - 1)
    if last != "" and int(last) < start:
        return None  # syntactically invalid: ignore
    if start >= size:
        raise RangeNotSatisfiable
    return start, end


def _opaque(tag: str) -> str:
    return tag.strip().removeprefix("W/")


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """Weak comparison, as If-None-Match asks for."""
    if not if_none_match:
        return False
    tags = [t for t in (part.strip() for part in if_none_match.split(",")) if t]
    return "*" in tags or _opaque(etag) in {_opaque(t) for t in tags}
