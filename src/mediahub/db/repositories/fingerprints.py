"""Duplicate-detection reads and writes of media rows: digests, pHash bands, and the rows still without them.

The matching itself (band lookups, Hamming distances, grouping) is `mediahub.dedup`'s; this
module only reads and writes the columns it works on.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from functools import cache
from typing import Any, Literal, Protocol

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Connection,
    Row,
    Select,
    bindparam,
    cast,
    func,
    or_,
    select,
    union_all,
    update,
)
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from mediahub.db.models import NO_PARENT, MediaItem, UtcDateTime, utcnow
from mediahub.db.session import Database

HashKind = Literal["w", "c"]  # whole picture, centre window
HASH_KINDS: tuple[HashKind, ...] = ("w", "c")
Digest = Literal["sha256", "pixels"]  # the uploaded bytes, the upright display pixels

IN_LIST = 500  # ids of one IN list
BAND_COLUMNS: dict[HashKind, tuple[Any, ...]] = {
    kind: tuple(getattr(MediaItem, f"hash_{kind}{band}") for band in range(4)) for kind in HASH_KINDS
}
HASH_COLUMNS = tuple(column for kind in HASH_KINDS for column in BAND_COLUMNS[kind])
_DIGEST_COLUMNS = {"sha256": MediaItem.sha256, "pixels": MediaItem.pixel_sha256}


class Scope(Protocol):
    """Which rows a lookup considers (`mediahub.dedup.policy.Scope`): kind "entity" (type, id and
    parent), "uploader" (uploaded_by), or "global" (every row)."""

    @property
    def kind(self) -> str: ...
    @property
    def entity_type(self) -> str | None: ...
    @property
    def entity_id(self) -> str | None: ...
    @property
    def parent_id(self) -> str | None: ...
    @property
    def uploaded_by(self) -> str | None: ...


def _in_scope(scope: Scope | None) -> list[ColumnElement[bool]]:
    if scope is None:
        return []
    if scope.kind == "entity":
        return [MediaItem.entity_type == scope.entity_type, MediaItem.entity_id == scope.entity_id,
                MediaItem.parent_id == (scope.parent_id or NO_PARENT)]
    if scope.kind == "uploader":
        return [MediaItem.uploaded_by == scope.uploaded_by]
    return []


def _unfingerprinted() -> list[ColumnElement[bool]]:
    return [MediaItem.media_type == "image",
            or_(MediaItem.pixel_sha256.is_(None), MediaItem.dedup_thumb.is_(None), MediaItem.hash_w0.is_(None),
                MediaItem.hash_c0.is_(None))]


class FingerprintRepository:
    """The duplicate-detection columns of media rows, in the caller's session. `scope` None: every row."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def with_digest(self, digest: Digest, value: str, scope: Scope | None = None) -> list[MediaItem]:
        """Rows in scope whose byte (`sha256`) or pixel (`pixels`) digest is `value`."""
        column = _DIGEST_COLUMNS[digest]
        return list(self.session.scalars(select(MediaItem).where(column == value, *_in_scope(scope))))

    def fingerprinted_ids(self, scope: Scope | None = None) -> set[int]:
        """Ids of the rows in scope that have a whole-picture hash."""
        return set(self.session.scalars(select(MediaItem.id).where(MediaItem.hash_w0.is_not(None),
                                                                   *_in_scope(scope))))

    def band_pages(self, kinds: Sequence[HashKind], page_size: int,
                   scope: Scope | None = None) -> Iterator[Sequence[Row[Any]]]:
        """Pages of (id, the four bands of each kind) of every row in scope with a hash of kinds[0],
        in id order (keyset paging)."""
        columns = [column for kind in kinds for column in BAND_COLUMNS[kind]]
        conditions = _in_scope(scope)
        last_id = 0
        while True:
            page = self.session.execute(
                select(MediaItem.id, *columns)
                .where(MediaItem.id > last_id, columns[0].is_not(None), *conditions)
                .order_by(MediaItem.id)
                .limit(page_size)
            ).all()
            yield page
            if len(page) < page_size:
                return
            last_id = page[-1][0]

    def load(self, ids: Iterable[int], scope: Scope | None = None) -> Iterator[MediaItem]:
        """The rows of `ids` that exist and are in scope, in id order, IN_LIST ids a query."""
        ordered = sorted(set(ids))
        conditions = _in_scope(scope)
        for start in range(0, len(ordered), IN_LIST):
            chunk = ordered[start:start + IN_LIST]
            yield from self.session.scalars(select(MediaItem).where(MediaItem.id.in_(chunk), *conditions)
                                            .order_by(MediaItem.id))

    def count_unfingerprinted(self) -> int:
        """Image rows that lack a fingerprint value."""
        return self.session.scalar(select(func.count(MediaItem.id)).where(*_unfingerprinted())) or 0

    def unfingerprinted(self, after_id: int, limit: int) -> list[MediaItem]:
        """The next image rows after `after_id` (keyset paging) that lack a fingerprint value."""
        return list(self.session.scalars(select(MediaItem).where(MediaItem.id > after_id, *_unfingerprinted())
                                         .order_by(MediaItem.id).limit(limit)))

    def fill(self, media_id: int, values: dict[str, Any]) -> None:
        """Write a row's duplicate-detection columns (`values`: column name -> value)."""
        self.session.execute(update(MediaItem).where(MediaItem.id == media_id).values(**values, updated_at=utcnow()))


# ---------------------------------------------------------------------------- the perceptual index's feed


def _halves(band_values: int) -> Select[Any]:
    """id and the hashes as four 32-bit halves (fewer values to fetch); -1 where a band is NULL
    (a row without a fingerprint), so a page converts to an integer array."""
    halves = [func.coalesce(cast(high, BigInteger) * band_values + low, -1)
              for high, low in zip(HASH_COLUMNS[::2], HASH_COLUMNS[1::2], strict=True)]
    return select(MediaItem.id, *halves)


@cache
def _changes_statement(band_values: int, with_gaps: bool) -> Any:
    """New ids, recently updated rows, and (`with_gaps`) ids still missing: one round trip.

    Built once with bound parameters, so SQLAlchemy's compiled cache serves every sync.
    """
    # No `id <= watermark` beside updated_at: SQLite would walk the primary key instead of the index.
    queries = [_halves(band_values).where(MediaItem.id > bindparam("watermark", type_=BigInteger)),
               _halves(band_values).where(MediaItem.updated_at >= bindparam("since", type_=UtcDateTime))]
    if with_gaps:
        queries.append(_halves(band_values).where(MediaItem.id.in_(bindparam("gaps", expanding=True))))
    return union_all(*queries)


class HashFeed:
    """Every row's whole and centre pHash, as (id, four 32-bit halves: whole high, whole low, centre
    high, centre low; -1 without a fingerprint) for the perceptual index (dedup/index.py): all of them page
    by page, and the changes since a sync.

    `band_bits`: the width of one stored band (the halves are two bands each). Not thread-safe:
    its owner serialises the calls.
    """

    HALVES = len(HASH_COLUMNS) // 2

    def __init__(self, database: Database, band_bits: int) -> None:
        self.database = database
        self.band_values = 1 << band_bits
        self._connection: Connection | None = None  # the syncs' own, in autocommit: one round trip each

    def pages(self, page_size: int) -> Iterator[Sequence[Row[Any]]]:
        """Every row in id order, `page_size` at a time, in one transaction (Core rows: no ORM processing)."""
        last = 0
        with self.database.session() as session:
            connection = session.connection()
            while True:
                rows = connection.execute(_halves(self.band_values).where(MediaItem.id > last)
                                          .order_by(MediaItem.id).limit(page_size)).all()
                if not rows:
                    return
                yield rows
                if len(rows) < page_size:
                    return
                last = rows[-1][0]

    def changes(self, watermark: int, since: datetime | None, gaps: Sequence[int]) -> Sequence[Row[Any]]:
        """Rows with an id above `watermark`, updated at or after `since`, or among `gaps` (ids
        still missing), in one query (a row may come more than once).

        Through the feed's own connection (no pool check-out, no ping, no BEGIN/COMMIT). When
        that fails it is dropped, and the query goes through a pooled session, which
        reconnects, or reports the database unavailable.
        """
        statement = _changes_statement(self.band_values, bool(gaps))
        parameters: dict[str, Any] = {"watermark": watermark, "since": since}
        if gaps:
            parameters["gaps"] = list(gaps)
        try:
            if self._connection is None:
                self._connection = self.database.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            return self._connection.execute(statement, parameters).all()
        except DBAPIError:
            self.close()
        with self.database.session() as session:
            return session.connection().execute(statement, parameters).all()

    def close(self) -> None:
        """Drop the feed's own connection (the next `changes` opens another)."""
        if self._connection is not None:
            try:
                self._connection.close()
            except DBAPIError:
                pass
            self._connection = None
