"""The moderation workflow: the queue, decisions, and users' reports.

What the public sees changes only on a moderator's decision, or when
FLAG_HIDE_THRESHOLD distinct users have open reports on an approved item. A
decision (or a dismissal) closes the item's open reports, so only reports made
after it count towards the threshold again, and only those of users whose
earlier report on the item was not ruled on: the same users cannot hide an item
again and again by reporting it after each decision.

An item that is not approved never replaces, demotes or hides an approved one:
its single-slot replacement and its primary claim take effect on its approval.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.orm import Session

from mediahub.db.models import MediaItem, MediaReport, utcnow
from mediahub.db.repositories import GUARDED_STATUSES, MediaRepository, MemberRepository, ReportRepository
from mediahub.db.session import Database
from mediahub.entities import get_kind
from mediahub.errors import RateLimited
from mediahub.media import access, audit, exposure
from mediahub.media.access import Principal
from mediahub.media.audit import SYSTEM_ACTOR, Actor
from mediahub.media.cdn import DELETE, REJECT, CdnPurge
from mediahub.media.cleanup import purge_pending_deletes
from mediahub.storage.base import Storage

STATUSES = ("pending", "approved", "rejected", "flagged")
REASON_MAX = 500  # MediaItem.moderation_reason and MediaReport.reason are String(500)
REPORTS_SHOWN = 10  # open reports listed per queue entry (the count covers all)
REPORT_HISTORY_SHOWN = 100  # an item's reports listed, newest first (the count covers all)
REPORT_WINDOW = timedelta(hours=1)  # REPORT_RATE_LIMIT counts a reporter's reports in this window
DISMISSED = "dismissed"
HIDDEN_BY_REPORTS = "hidden until a moderator decides: reported by"  # the reason of a flag reports raised
# The item's metadata key of its automated checks (media/checks.py): their results, and whether they still
# decide its status (`awaiting`), which any status change ends.
CHECKS = "checks"
AWAITING = "awaiting"
RISK = "risk"  # the highest score of the results: what the queue sorts by
# The audit action of each decision (db/repositories/audit.py ACTIONS).
DECISION_ACTIONS = {"approved": "media.approve", "rejected": "media.reject", "flagged": "media.flag",
                    "pending": "media.requeue"}


@dataclass(frozen=True)
class QueueEntry:
    item: MediaItem
    open_reports: int
    reports: list[MediaReport]  # the oldest REPORTS_SHOWN open ones


@dataclass(frozen=True)
class ReportHistory:
    reports: list[MediaReport]  # the newest REPORT_HISTORY_SHOWN, open and closed
    total: int


def apply_status(item: MediaItem, status: str, reason: str | None) -> None:
    """Record a status; the reason always belongs to the latest decision, so None clears it."""
    if status not in STATUSES:
        raise ValueError(f"unknown moderation status {status!r}")  # the API validates before this
    item.moderation_status = status
    item.moderation_reason = reason[:REASON_MAX] if reason else None
    checks = (item.meta or {}).get(CHECKS)
    if checks and checks.get(AWAITING):  # a decision made before the checks' is not theirs to undo
        item.meta = {**item.meta, CHECKS: {**checks, AWAITING: False}}


def decide(session: Session, item: MediaItem, status: str, reason: str | None, cdn: CdnPurge,
           actor: Actor) -> list[int]:
    """A moderator's decision: the status, the item's open reports closed, and on approval the
    place the item was uploaded for, each recorded in the audit trail as `actor`'s. Objects of
    replaced items are queued in pending_deletes: purge them after the commit. The CDN purges it
    queued (of an item leaving `approved`, of the items it replaces), to send after the commit."""
    was_approved = item.moderation_status == "approved"
    before = audit.snapshot(item)
    purges = cdn.queue(session, item, REJECT) if status != "approved" else []
    apply_status(item, status, reason)
    closed = ReportRepository(session).close_all(item.id, status)
    # An item that still holds its place (a primary hidden by reports, now restored) takes nothing:
    # the candidates uploaded meanwhile wait for their own decisions.
    if status == "approved" and not was_approved and not item.is_primary:
        purges += _take_effect(MediaRepository(session), item, cdn, actor)
    audit.record(session, actor, DECISION_ACTIONS[status], item, before, reason=reason)
    if closed:
        audit.record(session, actor, "report.close", item, {"open_reports": closed},
                     after={"open_reports": 0, "resolution": status})
    return purges


def is_single_slot(item: MediaItem) -> bool:
    return get_kind(item.entity_type).field(item.entity_field).slot == "single"


def replace_in_slot(repo: MediaRepository, item: MediaItem, cdn: CdnPurge, actor: Actor) -> list[int]:
    """Remove what `item` replaces in its single slot (deletes by `actor`, in the audit trail); the CDN purges
    of the removed items.

    Approved, it replaces every other item there (the slot shows one). Not approved,
    only its uploader's own unapproved items (a new attempt supersedes their last):
    the approved item and other people's candidates stay until a moderator decides.
    """
    purges: list[int] = []
    for old in repo.others_in_slot(item.entity_type, item.entity_id, item.entity_field, item.id, item.parent_id):
        if item.moderation_status == "approved" or (
                old.moderation_status not in GUARDED_STATUSES and old.uploaded_by == item.uploaded_by):
            purges += cdn.queue(repo.session, old, DELETE)
            audit.record_deleted(repo.session, actor, old, f"replaced by item {item.id} in its single slot")
            repo.delete(old)
    return purges


def _take_effect(repo: MediaRepository, item: MediaItem, cdn: CdnPurge, actor: Actor) -> list[int]:
    """An item just approved takes the primary it claimed, or its single slot (replacing the rest)."""
    single = is_single_slot(item)
    if single or item.claims_primary:
        with audit.recording_primaries(repo.session, actor, repo, item):
            repo.set_primary(item)
    return replace_in_slot(repo, item, cdn, actor) if single else []


class ModerationService:
    def __init__(self, database: Database, storage: Storage, cdn: CdnPurge, *, hide_threshold: int,
                 report_rate_limit: int) -> None:
        self.database = database
        self.storage = storage
        self.cdn = cdn
        self.hide_threshold = hide_threshold  # 0: reports never hide an item by themselves
        self.report_rate_limit = report_rate_limit  # reports per reporter per REPORT_WINDOW; 0: no limit

    def queue(self, principal: Principal, offset: int, limit: int,
              by_risk: bool = False) -> tuple[list[QueueEntry], int]:
        """Pending and flagged items and items with open reports, oldest first (`by_risk`: the highest risk
        of their automated checks first), and the total (moderators never see GPS: not theirs)."""
        access.require_moderator(principal)
        with self.database.session() as session:
            items, total = MediaRepository(session).moderation_queue(offset, limit,
                                                                     (CHECKS, RISK) if by_risk else None)
            reports = ReportRepository(session).open_by_item([item.id for item in items], REPORTS_SHOWN)
            return [QueueEntry(item, *reports.get(item.id, (0, []))) for item in items], total

    def reports(self, media_id: int, principal: Principal | None) -> ReportHistory:
        """An item's reports, open and closed (who, why, when, how each was closed): moderators and admins,
        who judge them; a reporter's name is no one else's business."""
        with self.database.session() as session:
            access.require_view(principal, MediaRepository(session).get(media_id), MemberRepository(session))
            access.require_moderator(principal)
            reports, total = ReportRepository(session).for_item(media_id, REPORT_HISTORY_SHOWN)
            return ReportHistory(reports, total)

    def decide(self, media_id: int, principal: Principal, status: str, reason: str | None) -> MediaItem:
        with exposure.following_status(self.storage) as sync, self.database.session() as session:
            members = MemberRepository(session)
            item = access.require_view(principal, MediaRepository(session).lock(media_id), members)
            access.require_moderator(principal)
            purges = decide(session, item, status, reason, self.cdn, Actor.of(principal))
            sync(item)
        purge_pending_deletes(self.database, self.storage)
        self.cdn.send(purges)
        return item

    def report(self, media_id: int, principal: Principal, reason: str | None) -> MediaItem:
        """Any signed-in caller who can see an item may report it, once while their report is open.

        Serialised per reporter (the rate limit is a count) and per item (the threshold is one).
        """
        purges: list[int] = []
        with (exposure.following_status(self.storage) as sync,
              self.database.locked_session(f"reports:{principal.sub}") as session):
            media, reports = MediaRepository(session), ReportRepository(session)
            item = access.require_view(principal, media.lock(media_id), MemberRepository(session))
            if reports.find_open(item.id, principal.sub) is not None:
                return item
            self._check_rate(reports, principal.sub)
            reason = reason[:REASON_MAX] if reason else None
            reports.open(item.id, principal.sub, reason)
            audit.record(session, Actor.of(principal), "report.create", item, None, reason=reason, after={})
            count = reports.fresh_count(item.id)
            if self.hide_threshold and count >= self.hide_threshold and item.moderation_status == "approved":
                purges = self.cdn.queue(session, item, REJECT)
                with audit.recording(session, SYSTEM_ACTOR, "media.flag", item):
                    apply_status(item, "flagged", f"{HIDDEN_BY_REPORTS} {count} users")
                sync(item)
        self.cdn.send(purges)
        return item

    def dismiss(self, media_id: int, principal: Principal) -> MediaItem:
        """Close an item's open reports as unfounded; an item they hid (flagged) is approved again. An item
        flagged for another reason (a moderator, the automated checks) stays flagged: only a decision undoes that."""
        with exposure.following_status(self.storage) as sync, self.database.session() as session:
            members = MemberRepository(session)
            item = access.require_view(principal, MediaRepository(session).lock(media_id), members)
            access.require_moderator(principal)
            actor = Actor.of(principal)
            closed = ReportRepository(session).close_all(item.id, DISMISSED)
            if closed:  # nothing to dismiss changes nothing: no event
                audit.record(session, actor, "report.dismiss", item, {"open_reports": closed},
                             after={"open_reports": 0})
            purges = []
            hidden_by_reports = (item.moderation_reason or "").startswith(HIDDEN_BY_REPORTS)
            if closed and item.moderation_status == "flagged" and hidden_by_reports:
                purges = decide(session, item, "approved", None, self.cdn, actor)
                sync(item)
        purge_pending_deletes(self.database, self.storage)
        self.cdn.send(purges)
        return item

    def _check_rate(self, reports: ReportRepository, reporter: str) -> None:
        if not self.report_rate_limit:
            return
        now = utcnow()
        count, oldest = reports.made_since(reporter, now - REPORT_WINDOW)
        if count >= self.report_rate_limit and oldest is not None:
            retry_after = max(1, math.ceil((oldest + REPORT_WINDOW - now).total_seconds()))
            raise RateLimited(
                f"at most {self.report_rate_limit} reports per hour; retry in {retry_after} s",
                retry_after=retry_after, limit=self.report_rate_limit,
            )
