"""Storage analytics: the totals of `media_usage`, what the media rows add up to, and the rule between them.

One rule says what an item counts for: one item and its original's bytes under each of its
USAGE_COLUMNS values, and the distinct objects it names (its original and each variant object;
several rows naming one object count it once) with their bytes. `item_usage_query` states it in
SQL for `recount` and migration 0010, over every row in one scan; `usage_of` in Python for the
tracker (db/usage_tracking.py), over the rows of the items a transaction changes, read with
locks. Every test of the tracker compares the two.
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


def item_usage_query(items: FromClause, variants: FromClause) -> Select[Any]:
    """One row per item: id, its USAGE_COLUMNS values, original bytes, objects, object bytes (`usage_of`'s rule).

    Takes the tables as arguments so that migration 0010 fills the table with its own frozen
    definitions of them.
    """
    objects = (select(variants.c.media_id, variants.c.storage_key, func.max(variants.c.byte_size).label("size"))
               .group_by(variants.c.media_id, variants.c.storage_key).subquery())
    extra = (
        select(objects.c.media_id, func.count().label("objects"), func.sum(objects.c.size).label("size"))
        .join_from(objects, items, items.c.id == objects.c.media_id)
        .where(objects.c.storage_key != items.c.original_key)
        .group_by(objects.c.media_id)
        .subquery()
    )
    return select(
        items.c.id, *(items.c[column] for column in USAGE_COLUMNS), items.c.byte_size,
        (1 + func.coalesce(extra.c.objects, 0)).label("objects"),
        (items.c.byte_size + func.coalesce(extra.c.size, 0)).label("object_bytes"),
    ).outerjoin_from(items, extra, extra.c.media_id == items.c.id)


def usage_of(values: tuple[str, ...], byte_size: int, original_key: str,
             variants: Iterable[tuple[str, int]]) -> ItemUsage:
    """What one item counts for, from its row and its variant rows' (key, bytes): the rule
    `item_usage_query` states in SQL, for rows already read. A variant naming the original is the
    original; rows naming one other object carry its size (renditions.plan_variants), the largest
    is taken all the same."""
    sizes: dict[str, int] = {}
    for key, size in variants:
        if key != original_key:
            sizes[key] = max(size, sizes.get(key, size))
    return ItemUsage(values, Amounts(1, byte_size, 1 + len(sizes), byte_size + sum(sizes.values())))


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

    def of_items(self, ids: Iterable[int], *, lock: bool = False) -> dict[int, ItemUsage]:
        """What each of these items counts for now; absent ids are left out.

        `lock`: a locking read of the rows (items FOR UPDATE, in id order; their variants FOR SHARE), so
        that no one else changes them until this transaction ends, and so that MariaDB reads them as
        committed now rather than as in the snapshot its REPEATABLE READ transaction began with.
        """
        ids = sorted(set(ids))
        found: dict[int, ItemUsage] = {}
        for start in range(0, len(ids), ID_BATCH):
            batch = ids[start:start + ID_BATCH]
            items = select(MediaItem.id, *(getattr(MediaItem, column) for column in USAGE_COLUMNS),
                           MediaItem.byte_size, MediaItem.original_key).where(MediaItem.id.in_(batch))
            variants = select(MediaVariant.media_id, MediaVariant.storage_key, MediaVariant.byte_size).where(
                MediaVariant.media_id.in_(batch))
            if lock:
                items, variants = items.with_for_update(), variants.with_for_update(read=True)
            # Items first: every writer of an item's variants holds its row, so once this statement has
            # the rows, the variants read by the next one (PostgreSQL: a new snapshot) are final.
            rows = self.session.execute(items.order_by(MediaItem.id)).all()
            variants_of: dict[int, list[tuple[str, int]]] = {}
            for media_id, key, size in self.session.execute(variants):
                variants_of.setdefault(media_id, []).append((key, size))
            for media_id, *values, size, original_key in rows:
                found[media_id] = usage_of(tuple(values), size, original_key, variants_of.get(media_id, ()))
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

