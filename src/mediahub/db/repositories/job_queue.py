"""The jobs table as a queue (the outbox), and the item status its jobs give: enqueue in a transaction, claim exclusively, finish or retry.

A claim is a conditional UPDATE (`status = 'queued'` -> `processing`) of a row
picked with `SELECT ... FOR UPDATE SKIP LOCKED`: on PostgreSQL and MariaDB
concurrent claimers skip each other's rows; SQLite has no row locks (and
SQLAlchemy leaves the clause out), but its single writer plus the guarded
UPDATE's row count still let exactly one claimer win. A claim holds a lease:
a job whose worker died is queued again once its lease has run out. Every
change of a job's status also settles its item's `processing_status` in the
same transaction (unless the job is not part of making the item: `settles_item`).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from mediahub.db.models import Job, MediaItem, utcnow
from mediahub.db.repositories.media import in_entity_any_parent, lock_item
from mediahub.db.repositories.pending_deletes import LAST_ERROR_MAX
from mediahub.db.session import Database

UNFINISHED = ("queued", "processing")
CLAIM_TRIES = 5  # SQLite: another claimer may win the picked row; try the next one


def enqueue(session: Session, kind: str, *, media_id: int | None = None, max_attempts: int = 5,
            payload: dict[str, Any] | None = None, settles_item: bool = True) -> Job:
    """Add a job in the caller's transaction: it exists exactly when that transaction commits.
    `settles_item` False: the job is about its item without being part of making it (its status ignores it)."""
    now = utcnow()
    job = Job(kind=kind, media_id=media_id, payload=payload or {}, settles_item=settles_item, status="queued",
              attempts=0, max_attempts=max_attempts, run_after=now, created_at=now, updated_at=now)
    session.add(job)
    session.flush()
    return job


def claim(database: Database, lease: timedelta, job_id: int | None = None) -> Job | None:
    """Take the next due job (or exactly `job_id`, if it is due), counting an attempt."""
    for _ in range(CLAIM_TRIES):
        now = utcnow()
        with database.session() as session:
            query = select(Job.id).where(Job.status == "queued", Job.run_after <= now)
            if job_id is not None:
                query = query.where(Job.id == job_id)
            picked = session.scalars(
                query.order_by(Job.run_after, Job.id).limit(1).with_for_update(skip_locked=True)
            ).first()
            if picked is None:
                return None
            won = session.execute(
                update(Job)
                .where(Job.id == picked, Job.status == "queued")
                .values(status="processing", attempts=Job.attempts + 1, lease_until=now + lease, updated_at=now)
            ).rowcount
            if won:
                job = session.get(Job, picked)
                _settle(session, job)
                return job
    return None


def complete(session: Session, job: Job) -> bool:
    """Record the claimed run's success; False (nothing written) when the job was claimed again since: its
    lease ran out or was handed back, and the later run records its own outcome."""
    done = session.execute(
        update(Job).where(Job.id == job.id, Job.attempts == job.attempts)
        .values(status="done", lease_until=None, last_error=None, updated_at=utcnow())
    ).rowcount
    _settle(session, job)
    return bool(done)


def fail(session: Session, claimed: Job, error: str, backoff: timedelta) -> Job:
    """Record the error; queue the job again after `backoff * 2**(attempts-1)`, or fail it for good. A job
    claimed again since this run's claim is left to the later run."""
    job = session.get(Job, claimed.id, populate_existing=True, with_for_update=True)
    if job is None:
        raise LookupError(f"job {claimed.id} is gone")
    if job.attempts != claimed.attempts:
        return job
    now = utcnow()
    job.last_error = error[:LAST_ERROR_MAX]
    job.lease_until = None
    job.updated_at = now
    if job.attempts >= job.max_attempts:
        job.status = "failed"
    else:
        job.status = "queued"
        job.run_after = now + retry_delay(backoff, job.attempts)
    session.flush()
    _settle(session, job)
    return job


def retry_delay(backoff: timedelta, attempts: int) -> timedelta:
    return backoff * (2 ** max(0, attempts - 1))


def reclaim_expired(database: Database) -> list[Job]:
    """Jobs whose worker vanished mid-run: queued again, or failed when out of attempts."""
    now = utcnow()
    with database.session() as session:
        expired = list(session.scalars(
            select(Job)
            .where(Job.status == "processing", Job.lease_until < now)
            .order_by(Job.id)
            .with_for_update(skip_locked=True)
        ))
        for job in expired:
            _requeue(job, f"lease expired at {job.lease_until:%Y-%m-%d %H:%M:%S} UTC: worker lost", now)
        session.flush()
        for media_id in {job.media_id for job in expired if job.settles_item}:
            settle_item(session, media_id)
        return expired


def hand_back(database: Database, held: dict[int, int]) -> list[Job]:
    """Jobs a stopping process claimed (id -> attempts of its claim) and has not finished: queued again at once
    with the lease cleared, so any process may claim them now (failed when out of attempts, like a lost
    worker's). A job finished or claimed again meanwhile is left alone."""
    if not held:
        return []
    now = utcnow()
    with database.session() as session:
        jobs = list(session.scalars(
            select(Job).where(Job.id.in_(list(held)), Job.status == "processing").order_by(Job.id).with_for_update()
        ))
        returned = [job for job in jobs if job.attempts == held[job.id]]
        for job in returned:
            _requeue(job, "handed back: its process stopped before the job finished", now)
        session.flush()
        for media_id in {job.media_id for job in returned if job.settles_item}:
            settle_item(session, media_id)
        return returned


def _requeue(job: Job, why: str, now: datetime) -> None:
    job.last_error = why
    job.lease_until = None
    job.updated_at = now
    job.status = "failed" if job.attempts >= job.max_attempts else "queued"
    job.run_after = now


def due_ids(database: Database, queued_before: datetime, limit: int = 500) -> list[int]:
    """Queued jobs due since before `queued_before`: their message may have been lost."""
    with database.session() as session:
        return list(session.scalars(
            select(Job.id)
            .where(Job.status == "queued", Job.run_after <= queued_before)
            .order_by(Job.run_after, Job.id)
            .limit(limit)
        ))


def unfinished_count(session: Session, media_ids: Iterable[int]) -> int:
    ids = list(media_ids)
    if not ids:
        return 0
    return session.scalar(
        select(func.count(Job.id)).where(Job.media_id.in_(ids), Job.status.in_(UNFINISHED))
    ) or 0


def busy_media_ids(session: Session, media_ids: Iterable[int], kind: str | None = None,
                   making: bool = False) -> set[int]:
    """Which of these items have an unfinished job (of `kind`, if given; `making`: one that is part of making
    the item, `settles_item`, so a tagging job still to run does not count)."""
    of_kind = ([] if kind is None else [Job.kind == kind]) + ([Job.settles_item.is_(True)] if making else [])
    return set(session.scalars(
        select(Job.media_id).where(Job.media_id.in_(list(media_ids)), Job.status.in_(UNFINISHED), *of_kind)
    ))


def queued_ids(session: Session, kind: str, entity: tuple[str, str] | None = None) -> list[int]:
    """Ids of the queued jobs of `kind` for existing items of entity (type, id) under any parent
    (None: of every entity), oldest first."""
    items = select(MediaItem.id).where(*in_entity_any_parent(entity))
    return list(session.scalars(
        select(Job.id).where(Job.kind == kind, Job.status == "queued", Job.media_id.in_(items)).order_by(Job.id)
    ))


def wait_for_media(database: Database, media_ids: Iterable[int], timeout: float, poll: float = 0.1) -> bool:
    """Block until every job of these items is done or failed; False on timeout."""
    ids = list(media_ids)
    deadline = time.monotonic() + timeout
    while True:
        with database.session() as session:
            if unfinished_count(session, ids) == 0:
                return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(poll)


def status_counts(database: Database, job_ids: Iterable[int]) -> dict[str, int]:
    """How many of these jobs are in each status."""
    ids = list(job_ids)
    if not ids:
        return {}
    with database.session() as session:
        rows = session.execute(select(Job.status, func.count(Job.id)).where(Job.id.in_(ids)).group_by(Job.status))
        return {status: int(count) for status, count in rows}

def derive_status(jobs: list[tuple[str, str]]) -> str:
    """From (kind, status) pairs oldest first.

    Unfinished work wins; otherwise the newest job of each kind decides, so a
    later successful reprocess clears an earlier failure of the same kind.
    """
    statuses = {status for _, status in jobs}
    if "processing" in statuses:
        return "processing"
    if "queued" in statuses:
        return "queued"
    newest = {kind: status for kind, status in jobs}
    return "failed" if "failed" in newest.values() else "ready"


def _settle(session: Session, job: Job) -> None:
    if job.settles_item:
        settle_item(session, job.media_id)


def settle_item(session: Session, media_id: int | None) -> None:
    """Write the status the item's jobs give it, in the caller's transaction.

    The row is locked first: two jobs of one item finishing at once must not
    each read the other as unfinished.
    """
    if media_id is None:
        return
    lock_item(session, media_id)
    rows = session.execute(select(Job.kind, Job.status).where(Job.media_id == media_id, Job.settles_item.is_(True))
                           .order_by(Job.id)).all()
    jobs = [(kind, status) for kind, status in rows]
    item = session.get(MediaItem, media_id, populate_existing=True)
    if item is None:
        return
    item.processing_status = derive_status(jobs)
    item.meta = {**(item.meta or {}), PENDING: unfinished(jobs)}


PENDING = "pending"  # the item's metadata key: kinds of its unfinished jobs


def unfinished(jobs: list[tuple[str, str]]) -> list[str]:
    """The kinds of the jobs still to run or running, in the order they were queued."""
    return list(dict.fromkeys(kind for kind, status in jobs if status in ("queued", "processing")))
