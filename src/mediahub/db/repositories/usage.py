"""Storage analytics: the totals of `media_usage`, what the media rows add up to, and the rule between them.

One rule says what an item counts for (`item_usage_query`): one item and its original's bytes
under each of its USAGE_COLUMNS values, and the distinct objects it names (its original and each
variant object; several rows naming one object count it once) with their bytes. The tracker
(db/usage_tracking.py) applies it to the items a transaction changes, `recount` and migration
0010 to every row.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass, fields
from typing import Any, Protocol

from sqlalchemy import FromClause, Select, func, select, text
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.orm import Session

from mediahub.db.models import MediaItem, MediaUsage, MediaVariant

USAGE_COLUMNS = ("storage_type", "entity_type", "media_type", "moderation_status")
# Rows per group that concurrent transactions add to; readers sum them. More shards, fewer lock
# waits between writers of one group, and a few more rows for `totals` to add up.
USAGE_SHARDS = 8
ID_BATCH = 500  # ids per IN list


@dataclass(frozen=True)
class Amounts:
    items: int = 0
    bytes: int = 0  # of the originals
    objects: int = 0  # distinct stored objects, originals and variants
    object_bytes: int = 0

    def __add__(self, other: Amounts) -> Amounts:
        return Amounts(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    def __neg__(self) -> Amounts:
        return Amounts(*(-getattr(self, f.name) for f in fields(self)))

    def __bool__(self) -> bool:
        return any(getattr(self, f.name) for f in fields(self))

    def as_values(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


Group = tuple[str, str]  # (a column of USAGE_COLUMNS, one of its values)
Deltas = dict[Group, Amounts]


@dataclass(frozen=True)
class ItemUsage:
    """What one item counts for: its USAGE_COLUMNS values and its amounts (items = 1)."""

    values: tuple[str, ...]
    amounts: Amounts

    def add_to(self, deltas: Deltas, sign: int = 1) -> None:
        amounts = self.amounts if sign > 0 else -self.amounts
        for column, value in zip(USAGE_COLUMNS, self.values):
            deltas[(column, value)] = deltas.get((column, value), Amounts()) + amounts


@dataclass(frozen=True)
class UsageTotals:
    """What the analytics endpoint shows: per column, the values that have items; and the whole store."""

    groups: dict[str, dict[str, Amounts]]
    objects: int
    object_bytes: int

    @classmethod
    def of(cls, deltas: Deltas) -> UsageTotals:
        groups: dict[str, dict[str, Amounts]] = {column: {} for column in USAGE_COLUMNS}
        for (column, value), amounts in sorted(deltas.items()):
            if amounts.items:
                groups[column][value] = amounts
        whole = sum((a for (column, _), a in deltas.items() if column == USAGE_COLUMNS[0]), Amounts())
        return cls(groups, whole.objects, whole.object_bytes)


class Executor(Protocol):
    def execute(self, statement: Any, /) -> Any: ...


def item_usage_query(items: FromClause, variants: FromClause, ids: list[int] | None = None) -> Select[Any]:
    """One row per item (of `ids`, or all): id, its USAGE_COLUMNS values, original bytes, objects, object bytes.

    Takes the tables as arguments so that migration 0010 fills the table with its own frozen
    definitions of them. A variant row naming the original is the original; rows naming one
    other object carry its size (renditions.plan_variants), the largest is taken all the same.
    """
    objects = select(variants.c.media_id, variants.c.storage_key, func.max(variants.c.byte_size).label("size"))
    if ids is not None:
        objects = objects.where(variants.c.media_id.in_(ids))
    objects_sq = objects.group_by(variants.c.media_id, variants.c.storage_key).subquery()
    extra = (
        select(objects_sq.c.media_id, func.count().label("objects"), func.sum(objects_sq.c.size).label("size"))
        .join_from(objects_sq, items, items.c.id == objects_sq.c.media_id)
        .where(objects_sq.c.storage_key != items.c.original_key)
        .group_by(objects_sq.c.media_id)
        .subquery()
    )
    query = select(
        items.c.id, *(items.c[column] for column in USAGE_COLUMNS), items.c.byte_size,
        (1 + func.coalesce(extra.c.objects, 0)).label("objects"),
        (items.c.byte_size + func.coalesce(extra.c.size, 0)).label("object_bytes"),
    ).outerjoin_from(items, extra, extra.c.media_id == items.c.id)
    return query if ids is None else query.where(items.c.id.in_(ids))


def _usage_of_row(row: Any) -> ItemUsage:
    values = tuple(row[1:1 + len(USAGE_COLUMNS)])
    size, objects, object_bytes = row[1 + len(USAGE_COLUMNS):]
    # PostgreSQL sums BIGINT as NUMERIC (a Decimal): normalise to int.
    return ItemUsage(values, Amounts(1, int(size), int(objects), int(object_bytes)))


def count_rows(executor: Executor, items: FromClause, variants: FromClause) -> Deltas:
    """What every media row adds up to, per group: one scan, grouped by all USAGE_COLUMNS at once."""
    per_item = item_usage_query(items, variants).subquery()
    columns = [per_item.c[column] for column in USAGE_COLUMNS]
    query = select(*columns, func.count(), func.sum(per_item.c.byte_size), func.sum(per_item.c.objects),
                   func.sum(per_item.c.object_bytes)).group_by(*columns)
    deltas: Deltas = {}
    for row in executor.execute(query):
        count, size, objects, object_bytes = (int(n) for n in row[len(USAGE_COLUMNS):])
        ItemUsage(tuple(row[:len(USAGE_COLUMNS)]), Amounts(count, size, objects, object_bytes)).add_to(deltas)
    return deltas


def usage_rows(deltas: Deltas, shard: int) -> list[dict[str, Any]]:
    """`media_usage` rows holding `deltas` in one shard, in key order (the order writers lock them in)."""
    return [{"group_name": column, "group_value": value, "shard": shard, **amounts.as_values()}
            for (column, value), amounts in sorted(deltas.items()) if amounts]


class UsageRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def of_items(self, ids: Iterable[int]) -> dict[int, ItemUsage]:
        """What each of these items counts for now (as this transaction sees them); absent ids are left out."""
        ids = sorted(set(ids))
        found: dict[int, ItemUsage] = {}
        for start in range(0, len(ids), ID_BATCH):
            query = item_usage_query(MediaItem.__table__, MediaVariant.__table__, ids[start:start + ID_BATCH])
            found.update((row[0], _usage_of_row(row)) for row in self.session.execute(query))
        return found

    def items_where(self, model: type[MediaItem] | type[MediaVariant], whereclause: Any) -> set[int]:
        """The items whose rows of `model`'s table match `whereclause` (None: every row)."""
        column = MediaItem.id if model is MediaItem else MediaVariant.media_id
        query = select(column).distinct()
        return set(self.session.scalars(query if whereclause is None else query.where(whereclause)))

    def add(self, deltas: Deltas, shard: int | None = None) -> None:
        """Add `deltas` to the totals, in one statement: a row per group, in key order, so that two
        transactions adding to one shard wait for each other instead of deadlocking.

        `INSERT ... ON CONFLICT DO UPDATE SET n = n + excluded.n` (MariaDB: `ON DUPLICATE KEY UPDATE`):
        a transaction holds the rows it added to until it commits, and one that adds to the same row
        waits for that commit and then adds to the committed value, so no update is lost.
        """
        rows = usage_rows(deltas, random.randrange(USAGE_SHARDS) if shard is None else shard)
        if not rows:
            return
        table = MediaUsage.__table__
        counters = [f.name for f in fields(Amounts)]
        dialect = self.session.get_bind().dialect.name
        if dialect in {"mysql", "mariadb"}:
            insert = mysql.insert(table).values(rows)
            statement = insert.on_duplicate_key_update({name: table.c[name] + insert.inserted[name]
                                                        for name in counters})
        else:
            insert = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table).values(rows)
            statement = insert.on_conflict_do_update(
                index_elements=[table.c.group_name, table.c.group_value, table.c.shard],
                set_={name: table.c[name] + insert.excluded[name] for name in counters})
        self.session.execute(statement)

    def current(self) -> Deltas:
        """The totals as kept, per group (shards added up; groups that came back to nothing left out)."""
        query = select(MediaUsage.group_name, MediaUsage.group_value, func.sum(MediaUsage.items),
                       func.sum(MediaUsage.bytes), func.sum(MediaUsage.objects),
                       func.sum(MediaUsage.object_bytes)).group_by(MediaUsage.group_name, MediaUsage.group_value)
        current = {(column, value): Amounts(*(int(n) for n in amounts))
                   for column, value, *amounts in self.session.execute(query)}
        return {group: amounts for group, amounts in current.items() if amounts}

    def totals(self) -> UsageTotals:
        return UsageTotals.of(self.current())

    def counted(self) -> Deltas:
        """What the media rows add up to now: what `current` holds when nothing went astray."""
        return count_rows(self.session, MediaItem.__table__, MediaVariant.__table__)

    def recount(self) -> tuple[Deltas, Deltas]:
        """Rebuild the totals from the rows in this transaction; (what was kept, what the rows say).

        Writers that add to the totals meanwhile wait: PostgreSQL locks the table against them
        (readers go on); MariaDB's locking read of every row locks the gaps too (REPEATABLE READ),
        so no shard row is added; SQLite has one writer. The rows are then read after every writer
        that got in first has committed, and a writer that waits adds its change after the rebuild.
        """
        dialect = self.session.get_bind().dialect.name
        table = MediaUsage.__table__
        if dialect == "postgresql":
            self.session.execute(text(f"LOCK TABLE {table.name} IN SHARE ROW EXCLUSIVE MODE"))
        elif dialect in {"mysql", "mariadb"}:
            self.session.execute(select(table.c.group_name).with_for_update())
        kept = self.current()
        self.session.execute(table.delete())
        counted = self.counted()
        rows = usage_rows(counted, shard=0)
        if rows:
            self.session.execute(table.insert(), rows)
        return kept, counted

