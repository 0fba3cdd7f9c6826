"""HTTP Range and conditional requests for file responses (RFC 9110), single ranges only."""

from __future__ import annotations

import re
from datetime import datetime
from email.utils import parsedate_to_datetime

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


def _http_date(text: str) -> datetime | None:
    try:
        parsed = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    return parsed if parsed.tzinfo is not None else None  # RFC 9110 dates are GMT; a zoneless one is not one


def not_modified(if_none_match: str | None, if_modified_since: str | None,
                 etag: str | None, last_modified: datetime | None) -> bool:
    """Whether the client's copy is current: If-None-Match decides; without it, If-Modified-Since."""
    if if_none_match:
        return etag is not None and etag_matches(if_none_match, etag)
    if not if_modified_since or last_modified is None:
        return False
    since = _http_date(if_modified_since)
    return since is not None and last_modified.replace(microsecond=0) <= since


def range_still_valid(if_range: str | None, etag: str | None, last_modified: datetime | None) -> bool:
    """Whether a Range may be honoured under If-Range: only if its validator still names this object.

    An entity tag must match strongly (a weak one never does); a date must equal
    Last-Modified to the second. Anything else asks for the whole object.
    """
    if if_range is None:
        return True
    value = if_range.strip()
    if value.startswith(("W/", '"')):
        return etag is not None and not value.startswith("W/") and not etag.startswith("W/") and value == etag
    when = _http_date(value)
    return when is not None and last_modified is not None and last_modified.replace(microsecond=0) == when
