"""`media_usage` kept in step with media_items and media_variants, in the transaction that changes them.

Installed on every SQLAlchemy `Session` (db/session.py), so no write through a session escapes it,
whichever service, job or command makes it:

- a flush: the items it deletes or changes (a USAGE_COLUMNS value, the original's key or bytes, their
  variant rows) are read with locks before it (`UsageRepository.of_items`: the rows as committed now,
  and no one else changes them until this transaction ends), and after it those whose objects may
  have changed, and the items it inserts (an item deleted counts for nothing, one that only changes
  groups moves its amounts); the difference is kept;
- a bulk statement run through the session (`session.execute(update(MediaItem)...)`, a DELETE of
  items or variants, an INSERT of variant rows): the same, around the statement, for the rows it
  touches. An UPDATE that sets none of the columns the totals depend on passes untouched; a bulk
  INSERT of items, or an UPDATE moving variant rows to another item, is refused (nothing in the
  application does either: items go in through `MediaRepository.add`);
- the commit: the differences are added to `media_usage` (`UsageRepository.add`) as the last
  statement before COMMIT, so its rows stay locked for as short a time as possible, and a
  transaction that rolls back never touches them. A savepoint that rolls back drops its own.

Statements run on a bare `Connection` are not seen: after filling rows that way (a bench), run
`mediahub analytics recount`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import event, inspect
from sqlalchemy.orm import ORMExecuteState, Session, SessionTransaction, UOWTransaction

from mediahub.db.models import MediaItem, MediaVariant
from mediahub.db.repositories.usage import USAGE_COLUMNS, Amounts, Deltas, ItemUsage, UsageRepository

OBJECT_ATTRIBUTES = frozenset({"byte_size", "original_key", "variants"})  # what an item's amounts depend on
GROUP_COLUMNS = frozenset(USAGE_COLUMNS)
ITEM_COLUMNS = frozenset({*USAGE_COLUMNS, "byte_size", "original_key"})
VARIANT_COLUMNS = frozenset({"media_id", "storage_key", "byte_size"})
STATE_KEY = "mediahub.usage_tracking"


class UntrackedWrite(TypeError):
    """A write the totals could not follow; a programming error, raised before anything is written."""


@dataclass
class _Flush:
    before: dict[int, ItemUsage]  # the existing items it changes, as they were
    requery: set[int]  # of those, the items whose amounts may change: read again after it
    regroup: dict[int, MediaItem]  # those whose groups alone change: their amounts move to the new values
    new: list[Any]  # items and variant rows it inserts


@dataclass
class _State:
    flush: _Flush | None = None
    # Differences not yet written, per transaction (the root or a savepoint) they were made in.
    pending: dict[SessionTransaction, Deltas] = field(default_factory=dict)

    def record(self, transaction: SessionTransaction, deltas: Deltas) -> None:
        kept = self.pending.setdefault(transaction, {})
        for group, amounts in deltas.items():
            kept[group] = kept.get(group, Amounts()) + amounts


def install(target: Any = Session) -> None:
    """Listen on `target` (a Session class or sessionmaker); once is enough, twice does nothing."""
    for name, listener in LISTENERS.items():
        if not event.contains(target, name, listener):
            event.listen(target, name, listener)


def _state(session: Session) -> _State:
    return session.info.setdefault(STATE_KEY, _State())


def _innermost(session: Session) -> SessionTransaction:
    transaction = session.get_nested_transaction() or session.get_transaction()
    assert transaction is not None  # a flush or statement always runs in one
    return transaction


def _difference(before: dict[int, ItemUsage], after: dict[int, ItemUsage]) -> Deltas:
    deltas: Deltas = {}
    for usage in before.values():
        usage.add_to(deltas, -1)
    for usage in after.values():
        usage.add_to(deltas)
    return deltas


def _changed(obj: Any, names: frozenset[str]) -> bool:
    attrs = inspect(obj).attrs
    return any(attrs[name].history.has_changes() for name in names)


def _media_ids(variant: MediaVariant) -> set[int]:
    """The item a variant row belongs to, before and after this flush."""
    history = inspect(variant).attrs.media_id.history
    return {media_id for media_id in (*history.added, *history.unchanged, *history.deleted) if media_id is not None}


def _before_flush(session: Session, _context: UOWTransaction, _instances: Any) -> None:
    requery: set[int] = set()
    regroup: dict[int, MediaItem] = {}
    gone: set[int] = set()
    new = [obj for obj in session.new if isinstance(obj, MediaItem | MediaVariant)]
    requery.update(obj.media_id for obj in new if isinstance(obj, MediaVariant) and obj.media_id is not None)
    for obj in session.deleted:
        if isinstance(obj, MediaItem):
            gone.add(obj.id)
        elif isinstance(obj, MediaVariant):
            requery.update(_media_ids(obj))
    for obj in session.dirty:
        if isinstance(obj, MediaItem):
            if _changed(obj, OBJECT_ATTRIBUTES):
                requery.add(obj.id)
            elif _changed(obj, GROUP_COLUMNS):
                regroup[obj.id] = obj
        elif isinstance(obj, MediaVariant) and _changed(obj, VARIANT_COLUMNS):
            requery.update(_media_ids(obj))
    if requery or regroup or gone or new:
        before = UsageRepository(session).of_items(requery | gone | regroup.keys(), lock=True)
        _state(session).flush = _Flush(before, requery - gone,
                                       {k: v for k, v in regroup.items() if k not in requery | gone}, new)


def _after_flush(session: Session, _context: UOWTransaction) -> None:
    state = _state(session)
    flush, state.flush = state.flush, None
    if flush is None:
        return
    added = {obj.id for obj in flush.new if isinstance(obj, MediaItem)}
    touched = {obj.media_id for obj in flush.new if isinstance(obj, MediaVariant)} - added - flush.requery
    if touched:  # a row added to an item through neither the item nor its id: its "before" is unknown
        raise UntrackedWrite(f"variant rows added to items {sorted(touched)} outside their collection")
    repo = UsageRepository(session)
    # New items are this transaction's alone: read without locks (on MariaDB a locking read of the newest
    # item's variants would lock the gap every other upload inserts its variants into).
    after = {**repo.of_items(flush.requery, lock=True), **repo.of_items(added)}
    for media_id, item in flush.regroup.items():
        if media_id in flush.before:
            after[media_id] = ItemUsage(tuple(getattr(item, column) for column in USAGE_COLUMNS),
                                        flush.before[media_id].amounts)
    state.record(_innermost(session), _difference(flush.before, after))


def _updated_columns(orm_execute: ORMExecuteState) -> set[str] | None:
    """The columns an UPDATE sets; None when they cannot be told (then it is followed as any write).

    SQLAlchemy keeps a statement's SET clause in `_values` / `_ordered_values` and offers no public
    reader; parameters passed with the statement may set columns too.
    """
    statement = orm_execute.statement
    values = getattr(statement, "_values", None)
    ordered = getattr(statement, "_ordered_values", None)
    if values is None and ordered is None and not orm_execute.parameters:
        return None
    names = {getattr(column, "key", column) for column in (values or {})}
    names.update(getattr(column, "key", column) for column, _ in (ordered or ()))
    parameters = orm_execute.parameters
    for row in parameters if isinstance(parameters, list) else [parameters or {}]:
        names.update(row)
    return names


def _followed_table(orm_execute: ORMExecuteState) -> type[MediaItem] | type[MediaVariant] | None:
    """The model whose rows a bulk statement changes in a way the totals depend on; None: no total changes."""
    statement = orm_execute.statement
    table = getattr(getattr(statement, "table", None), "name", None)
    model = {MediaItem.__tablename__: MediaItem, MediaVariant.__tablename__: MediaVariant}.get(table)
    if model is None:
        return None
    if orm_execute.is_update:
        columns = _updated_columns(orm_execute)
        if columns is not None and not columns & (ITEM_COLUMNS if model is MediaItem else VARIANT_COLUMNS):
            return None
        if model is MediaVariant and (columns is None or "media_id" in columns):
            raise UntrackedWrite("an UPDATE of media_variants.media_id: delete the rows and insert new ones")
    if orm_execute.is_insert and model is MediaItem:
        raise UntrackedWrite("a bulk INSERT of media items: add them through the ORM (MediaRepository.add)")
    return model


def _touched_items(orm_execute: ORMExecuteState, model: type[MediaItem] | type[MediaVariant],
                   repo: UsageRepository) -> set[int]:
    """The items a bulk statement on `model`'s table changes."""
    parameters = orm_execute.parameters
    rows = parameters if isinstance(parameters, list) else [parameters or {}]
    if orm_execute.is_insert:  # variant rows
        return {row["media_id"] for row in rows}
    statement = orm_execute.statement
    if orm_execute.is_update and model is MediaItem and isinstance(parameters, list) and statement.whereclause is None:
        return {row["id"] for row in rows}  # an ORM bulk UPDATE by primary key
    return repo.items_where(model, statement.whereclause)


def _do_orm_execute(orm_execute: ORMExecuteState) -> Any:
    if not (orm_execute.is_update or orm_execute.is_delete or orm_execute.is_insert):
        return None
    model = _followed_table(orm_execute)
    if model is None:
        return None
    session = orm_execute.session
    # Pending ORM changes first, accounted by their own flush, so that "before" is only this statement's.
    session.flush()
    repo = UsageRepository(session)
    ids = _touched_items(orm_execute, model, repo)
    before = repo.of_items(ids, lock=True)
    result = orm_execute.invoke_statement()
    _state(session).record(_innermost(session), _difference(before, repo.of_items(ids, lock=True)))
    return result


def _before_commit(session: Session) -> None:
    """The root transaction writes what it and its released savepoints changed; a savepoint's release
    hands its changes to the transaction around it."""
    session.flush()
    state = session.info.get(STATE_KEY)
    if state is None:
        return
    nested = session.get_nested_transaction()
    if nested is not None:
        handed = state.pending.pop(nested, {})
        if handed and nested.parent is not None:
            state.record(nested.parent, handed)
        return
    deltas: Deltas = {}
    for changes in state.pending.values():
        for group, amounts in changes.items():
            deltas[group] = deltas.get(group, Amounts()) + amounts
    state.pending.clear()
    UsageRepository(session).add(deltas)


def _after_transaction_end(session: Session, transaction: SessionTransaction) -> None:
    """Whatever a transaction still holds when it ends was rolled back (committed ones were handed on)."""
    state = session.info.get(STATE_KEY)
    if state is None:
        return
    state.pending.pop(transaction, None)
    if transaction.parent is None:
        state.flush = None


LISTENERS = {
    "before_flush": _before_flush,
    "after_flush": _after_flush,
    "do_orm_execute": _do_orm_execute,
    "before_commit": _before_commit,
    "after_transaction_end": _after_transaction_end,
}
