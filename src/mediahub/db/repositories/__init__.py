"""Queries over the metadata store, one small class (or module) per table.

Each repository works inside the caller's `Session` and transaction (it
flushes, never commits), so a service can combine several calls atomically.
Nothing here knows about HTTP or settings. All SQL of the application lives
under `mediahub.db`.
"""

from mediahub.db.repositories.analytics import AnalyticsRepository, DayCount
from mediahub.db.repositories.audit import ACTIONS, SYSTEM, AuditFilter, AuditRepository, item_event
from mediahub.db.repositories.duplicates import DuplicateRepository
from mediahub.db.repositories.fingerprints import FingerprintRepository, HashFeed
from mediahub.db.repositories.media import GUARDED_STATUSES, MODERATION_QUEUE_STATUSES, MediaRepository
from mediahub.db.repositories.members import MEMBER_ROLES, MemberRepository
from mediahub.db.repositories.pending_deletes import LAST_ERROR_MAX, PendingDeleteRepository
from mediahub.db.repositories.reports import ReportRepository
from mediahub.db.repositories.usage import USAGE_COLUMNS, Amounts, UsageRepository, UsageTotals
from mediahub.db.repositories.variants import VariantRepository, VariantRow

__all__ = [
    "ACTIONS", "GUARDED_STATUSES", "LAST_ERROR_MAX", "MEMBER_ROLES", "MODERATION_QUEUE_STATUSES", "SYSTEM",
    "USAGE_COLUMNS", "FingerprintRepository", "HashFeed", "MediaRepository", "MemberRepository",
    "PendingDeleteRepository", "AnalyticsRepository", "Amounts", "AuditFilter", "AuditRepository", "DayCount",
    "DuplicateRepository", "ReportRepository", "UsageRepository", "UsageTotals", "VariantRepository", "VariantRow",
    "item_event",
]
