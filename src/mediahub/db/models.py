"""SQLAlchemy 2 models. Schema changes go through Alembic (db/migrations)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
    true,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeEngine

# SQLite only auto-increments INTEGER PRIMARY KEY, so BIGINT falls back to it there.
BigId = BigInteger().with_variant(Integer(), "sqlite")

# Storage keys compare and sort as bytes on every backend, as S3 lists them: `mediahub verify` merges
# the keys the rows name, read in key order, with the store's listing. SQLite (BINARY) and MariaDB
# (utf8mb4_bin, below) do so by themselves; PostgreSQL needs the C collation, whatever the database's.
ObjectKey = String(512).with_variant(String(512, collation="C"), "postgresql")

# Binary collation on MariaDB so text compares case-sensitively, as on SQLite and
# PostgreSQL: public ids (base64url) and entity ids differing only in case stay distinct.
MYSQL_TABLE_OPTIONS = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}

# Every constraint gets a deterministic name on every dialect, so migrations
# (including SQLite batch mode) can address unnamed ones such as public_id's.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


NO_PARENT = ""  # parent_id of top-level entities (and of nested rows stored before parents were recorded)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class UtcDateTime(TypeDecorator[datetime]):
    """An aware UTC datetime on every dialect.

    SQLite and MariaDB keep no offset and return naive values (PostgreSQL
    returns aware ones), and MariaDB drops microseconds unless asked, which
    breaks "oldest first". Values are stored as UTC and always read back aware.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name in {"mysql", "mariadb"}:
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(DateTime(timezone=True))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: pass an aware one (see utcnow())")
        value = value.astimezone(timezone.utc)
        return value if dialect.name == "postgresql" else value.replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class MediaItem(Base):
    __tablename__ = "media_items"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True)

    entity_type: Mapped[str] = mapped_column(String(32))
    entity_id: Mapped[str] = mapped_column(String(64))
    # The parent entity's id for nested kinds (an amenity's community), NO_PARENT otherwise; part of
    # the entity's identity. Not NULL: NULLs never collide, so uq_media_one_primary would stop holding.
    parent_id: Mapped[str] = mapped_column(String(64), default=NO_PARENT, server_default=NO_PARENT)
    entity_field: Mapped[str] = mapped_column(String(32))
    position: Mapped[int] = mapped_column(Integer, default=0)
    is_primary: Mapped[bool] = mapped_column(Boolean, default=False)
    # True when primary, NULL otherwise: the unique constraint below then allows
    # one primary per entity field (NULLs never collide on SQLite, PostgreSQL, MariaDB).
    primary_marker: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    # Asked to be the primary while unapproved and an approved item held it: becomes it on approval.
    claims_primary: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())

    media_type: Mapped[str] = mapped_column(String(8))  # image | video
    storage_type: Mapped[str] = mapped_column(String(8))  # local | s3
    bucket_name: Mapped[str | None] = mapped_column(String(255))
    original_key: Mapped[str] = mapped_column(ObjectKey)
    content_type: Mapped[str] = mapped_column(String(64))
    byte_size: Mapped[int] = mapped_column(BigInteger)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    duration: Mapped[float | None] = mapped_column(Float)

    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    caption: Mapped[str | None] = mapped_column(Text)
    alt_text: Mapped[str | None] = mapped_column(String(500))

    moderation_status: Mapped[str] = mapped_column(String(16), default="pending")
    moderation_reason: Mapped[str | None] = mapped_column(String(500))
    processing_status: Mapped[str] = mapped_column(String(16), default="ready")

    image_hash: Mapped[str | None] = mapped_column(String(16))
    # Duplicate detection (dedup/policy.py): digest of the upright display pixels, the 64x64 grey
    # thumbnail every perceptual hash is derived from, and the whole-picture and centre pHashes of that
    # thumbnail as four 16-bit bands each (all eight set, or none). The perceptual index (dedup/index.py,
    # a file the host's processes share) is built from the bands; the database needs no index on them.
    pixel_sha256: Mapped[str | None] = mapped_column(String(64))
    dedup_thumb: Mapped[bytes | None] = mapped_column(LargeBinary)
    hash_w0: Mapped[int | None] = mapped_column(Integer)
    hash_w1: Mapped[int | None] = mapped_column(Integer)
    hash_w2: Mapped[int | None] = mapped_column(Integer)
    hash_w3: Mapped[int | None] = mapped_column(Integer)
    hash_c0: Mapped[int | None] = mapped_column(Integer)
    hash_c1: Mapped[int | None] = mapped_column(Integer)
    hash_c2: Mapped[int | None] = mapped_column(Integer)
    hash_c3: Mapped[int | None] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))  # of the bytes as uploaded
    md5: Mapped[str] = mapped_column(String(32))
    # Of the original as stored (stripped of GPS and metadata, or its re-encode): what a copy of the
    # object is verified against. NULL for rows stored before it was recorded.
    stored_sha256: Mapped[str | None] = mapped_column(String(64))
    uploaded_by: Mapped[str | None] = mapped_column(String(128))

    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)

    __table_args__ = (
        UniqueConstraint("entity_type", "parent_id", "entity_id", "entity_field", "primary_marker",
                         name="uq_media_one_primary"),
        # parent_id second: a parent's nested items (a community's amenities) are one range too. In gallery
        # order (id breaks ties), so a page of an entity is read in order, never sorted; moderation_status
        # last, so what a stranger may see of an entity is counted from the index without reading its rows.
        Index("ix_media_entity", "entity_type", "parent_id", "entity_id", "entity_field", "position", "id",
              "moderation_status"),
        Index("ix_media_is_primary", "is_primary"),
        # The moderation queue reads each status oldest first, a page at a time.
        Index("ix_media_moderation_queue", "moderation_status", "created_at", "id"),
        # The stores the rows record, a seek each (runtime.py), and a store's rows (storage migration).
        Index("ix_media_store", "storage_type", "bucket_name"),
        Index("ix_media_sha256", "sha256"),
        Index("ix_media_image_hash", "image_hash"),
        Index("ix_media_uploaded_by", "uploaded_by"),
        # The file route finds the row that owns a requested object key.
        Index("ix_media_original_key", "original_key"),
        # Duplicate detection: exact pixel matches; the perceptual index re-reads recently updated rows (0005).
        # sha256 and id too (0014): duplicate review lists the groups of equal pixels (and, among rows
        # without a pixel digest, of equal files) with their newest id, a page at a time, from the index alone.
        Index("ix_media_pixel_sha256", "pixel_sha256", "sha256", "id"),
        Index("ix_media_updated_at", "updated_at"),
        # Uploads over time (analytics): a range of days counted, and their bytes summed, from the index alone.
        Index("ix_media_created_at", "created_at", "byte_size"),
        MYSQL_TABLE_OPTIONS,
    )

    # Loaded with the item (one query per page of items): items leave their session for the API.
    # Written through db/repositories/variants.py once the item exists.
    variants: Mapped[list[MediaVariant]] = relationship(
        lazy="selectin", order_by="MediaVariant.id", cascade="all, delete-orphan", passive_deletes=True)

    @property
    def store(self) -> tuple[str, str | None]:
        """The store the row records the item's objects are in (storage_type, bucket_name): where objects
        made for it later go too, until a storage migration switches it (media/storage_migration.py)."""
        return self.storage_type, self.bucket_name

    def keys(self) -> list[str]:
        """Every stored object of this item, once each: the original and each variant's.

        Variants may share an object (with each other, or with the original): see MediaVariant.
        """
        return list(dict.fromkeys([self.original_key, *(v.storage_key for v in self.variants)]))

    @property
    def presets(self) -> list[MediaVariant]:
        """The configured renditions (sizes and formats), without stored transform results."""
        return [v for v in self.variants if v.kind == PRESET]


PRESET = "preset"  # a configured size in one format, listed in the item's JSON
TRANSFORM = "transform"  # a signed transform's stored result, named by its options' digest, never listed


class MediaVariant(Base):
    """One rendition of an item: a size (`name`) in one format, and the object that holds it.

    A rendition whose pixels would equal a larger one's (a small picture has no distinct
    `large`) points at that object instead of storing a copy, so one `storage_key` may be
    named by several rows of an item, and by the item's `original_key`.
    """

    __tablename__ = "media_variants"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    media_id: Mapped[int] = mapped_column(BigId, ForeignKey("media_items.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))
    format: Mapped[str] = mapped_column(String(16))
    storage_key: Mapped[str] = mapped_column(ObjectKey)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    byte_size: Mapped[int] = mapped_column(BigInteger)
    content_type: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    kind: Mapped[str] = mapped_column(String(16), default=PRESET, server_default=PRESET)
    content_hash: Mapped[str | None] = mapped_column(String(64))  # SHA-256 of the bytes: the strong ETag

    __table_args__ = (
        # Also the index of an item's variants (media_id leads).
        UniqueConstraint("media_id", "name", "format", name="uq_variant_name_format"),
        # The file route finds the row that names a requested object key.
        Index("ix_variants_storage_key", "storage_key"),
        MYSQL_TABLE_OPTIONS,
    )


MACHINE = "machine"  # MediaTag.source: a tagging job's classifier said so
MODERATOR = "moderator"  # MediaTag.source: a moderator named it (a room correction)
SUGGESTED, ACCEPTED, REJECTED = "suggested", "accepted", "rejected"  # MediaTag.state


class MediaTag(Base):
    """A machine tag of an item (what a classifier saw: a room type, an object) or a moderator's room, with its
    review: kept apart from `MediaItem.tags`, which holds what people typed and nothing else.

    A tagging job replaces the item's undecided (`suggested`) machine rows; a row a moderator decided
    (`accepted`, `rejected`) and a moderator's own row stay, so the decisions can be exported as labels.
    """

    __tablename__ = "media_tags"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    media_id: Mapped[int] = mapped_column(BigId, ForeignKey("media_items.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(8))  # room | object
    label: Mapped[str] = mapped_column(String(64))
    score: Mapped[float | None] = mapped_column(Float)  # the classifier's, 0..1; NULL for a moderator's row
    source: Mapped[str] = mapped_column(String(16))  # MACHINE | MODERATOR
    model: Mapped[str] = mapped_column(String(128), default="", server_default="")  # "" for a moderator's row
    state: Mapped[str] = mapped_column(String(16), default=SUGGESTED)  # SUGGESTED | ACCEPTED | REJECTED
    decided_by: Mapped[str | None] = mapped_column(String(128))
    decided_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)

    __table_args__ = (
        # Also the index of an item's tags, and of its machine tags from one model (media_id leads).
        UniqueConstraint("media_id", "source", "model", "kind", "label", name="uq_media_tag"),
        # Filtering a library by tag: a label's items.
        Index("ix_media_tags_label", "label", "media_id"),
        # The decided rows (the export), without reading the far more numerous suggested ones.
        Index("ix_media_tags_state", "state", "id"),
        MYSQL_TABLE_OPTIONS,
    )


class EntityMember(Base):
    """Principals who own or edit an entity (who may upload to it)."""

    __tablename__ = "entity_members"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    entity_type: Mapped[str] = mapped_column(String(32))
    entity_id: Mapped[str] = mapped_column(String(64))
    parent_id: Mapped[str] = mapped_column(String(64), default=NO_PARENT, server_default=NO_PARENT)  # as MediaItem's
    subject: Mapped[str] = mapped_column(String(128))
    role: Mapped[str] = mapped_column(String(16), default="owner")  # owner | editor
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)

    __table_args__ = (
        UniqueConstraint("entity_type", "parent_id", "entity_id", "subject", name="uq_member"),
        MYSQL_TABLE_OPTIONS,
    )


class MediaUsage(Base):
    """Running totals of the media rows for each value of each grouping column (storage analytics).

    db/usage_tracking.py keeps them in step in the transaction of every change to media_items and
    media_variants; `UsageRepository.recount` rebuilds them from the rows. A group's totals are the
    sum of its shards: each transaction adds to one shard picked at random, so concurrent writers of
    one group (every upload is `storage_type=local`) seldom wait for each other's row lock.
    """

    __tablename__ = "media_usage"

    group_name: Mapped[str] = mapped_column(String(32), primary_key=True)  # a column of USAGE_COLUMNS
    group_value: Mapped[str] = mapped_column(String(64), primary_key=True)
    shard: Mapped[int] = mapped_column(Integer, primary_key=True)
    items: Mapped[int] = mapped_column(BigInteger)
    bytes: Mapped[int] = mapped_column(BigInteger)  # of the originals
    # The distinct stored objects of those items, originals and variants (an object several rows of an
    # item name counts once), and their bytes. Every item has exactly one storage_type, so the
    # storage_type rows add up to the whole library.
    objects: Mapped[int] = mapped_column(BigInteger)
    object_bytes: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (MYSQL_TABLE_OPTIONS,)


class KeptDuplicateGroup(Base):
    """A duplicate group a moderator chose to keep whole ("keep all"): not shown for review again
    until an item newer than those they saw joins it.

    A group is named by its kind and key (db/repositories/duplicates.py): `pixels` and a pixel digest,
    `file` and a file digest, `near` and the id of the item its near duplicates were found from.
    """

    __tablename__ = "duplicate_reviews"

    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    group_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    up_to_id: Mapped[int] = mapped_column(BigInteger)  # the newest member the reviewer saw
    reviewed_by: Mapped[str] = mapped_column(String(128))
    reviewed_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)

    __table_args__ = (MYSQL_TABLE_OPTIONS,)


class RenderClaim(Base):
    """A rendition being made on request: concurrent misses for it wait for the claimant (media/delivery.py).

    A claim older than the render deadline is abandoned (its process died) and may be taken over.
    """

    __tablename__ = "render_claims"

    media_id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    format: Mapped[str] = mapped_column(String(16), primary_key=True)
    owner: Mapped[str] = mapped_column(String(64))
    claimed_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)

    __table_args__ = (MYSQL_TABLE_OPTIONS,)


class PendingDelete(Base):
    """Objects to remove from storage, retried until the store confirms.

    Written in the same transaction that removes (or never commits) a row, so
    no object is forgotten when storage fails during a delete.
    """

    __tablename__ = "pending_deletes"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    storage_key: Mapped[str] = mapped_column(ObjectKey)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)

    __table_args__ = (
        # `mediahub verify` reads the queued keys in key order beside the rows' keys.
        Index("ix_pending_deletes_storage_key", "storage_key"),
        MYSQL_TABLE_OPTIONS,
    )


class VerifyCheckpoint(Base):
    """How far the last unfinished `mediahub verify` of one store got, for `--resume`.

    Every key up to `after_key` (in byte order) was compared, its findings reported and, with
    `--repair`, repaired; the counts are those of the whole pass so far. Removed when a pass ends.
    """

    __tablename__ = "verify_checkpoints"

    store: Mapped[str] = mapped_column(String(512), primary_key=True)  # Storage.location
    after_key: Mapped[str] = mapped_column(ObjectKey)
    objects: Mapped[int] = mapped_column(BigInteger)
    keys_in_db: Mapped[int] = mapped_column(BigInteger)
    stray: Mapped[int] = mapped_column(BigInteger)
    missing: Mapped[int] = mapped_column(BigInteger)
    removed: Mapped[int] = mapped_column(BigInteger)
    marked: Mapped[int] = mapped_column(BigInteger)
    seconds: Mapped[float] = mapped_column(Float)
    started_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)

    __table_args__ = (MYSQL_TABLE_OPTIONS,)


class MediaReport(Base):
    """A user's report that an item should not be shown: who, why, when.

    Open until a moderator decides on the item or dismisses its reports. `open_marker`
    is True while open and NULL once closed, so the unique constraint allows one open
    report per reporter and item (NULLs never collide), and any number of closed ones.
    """

    __tablename__ = "media_reports"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    media_id: Mapped[int] = mapped_column(BigInteger)
    reporter: Mapped[str] = mapped_column(String(128))
    reason: Mapped[str | None] = mapped_column(String(500))
    open_marker: Mapped[bool | None] = mapped_column(Boolean, nullable=True, default=True)
    resolution: Mapped[str | None] = mapped_column(String(16))  # the decision that closed it, or "dismissed"
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    closed_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)

    __table_args__ = (
        # Also the index of an item's reports (media_id leads).
        UniqueConstraint("media_id", "reporter", "open_marker", name="uq_report_one_open"),
        # The per-reporter rate limit counts a reporter's recent reports.
        Index("ix_reports_reporter_created", "reporter", "created_at"),
        # The moderation queue's reported items: the open reports, without reading the closed ones.
        Index("ix_reports_open", "open_marker", "media_id"),
        MYSQL_TABLE_OPTIONS,
    )


class AuditEvent(Base):
    """One change a person (or the system) made: who, what, when, why, and the fields it changed.

    Written by db/repositories/audit.py in the transaction of the change itself, so an event exists
    exactly when its change committed. The item is named by its id and public id without a foreign
    key: an item's history outlives it. `before` and `after` hold only the fields that changed.
    """

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    occurred_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    actor: Mapped[str] = mapped_column(String(128))  # the principal's subject, or SYSTEM / the CLI's name
    actor_role: Mapped[str | None] = mapped_column(String(16))  # admin | moderator | user | system | operator
    action: Mapped[str] = mapped_column(String(32))  # one of db/repositories/audit.py ACTIONS
    media_id: Mapped[int | None] = mapped_column(BigInteger)
    media_public_id: Mapped[str | None] = mapped_column(String(32))
    entity_type: Mapped[str | None] = mapped_column(String(32))
    parent_id: Mapped[str | None] = mapped_column(String(64))  # as MediaItem's (NO_PARENT for top-level kinds)
    entity_id: Mapped[str | None] = mapped_column(String(64))
    reason: Mapped[str | None] = mapped_column(String(500))
    before: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    request_id: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (
        # Every listing is newest first by (occurred_at, id), a page after a cursor: the whole trail, and the
        # same order within each filter below; retention deletes the oldest by time.
        Index("ix_audit_occurred", "occurred_at", "id"),
        Index("ix_audit_media", "media_public_id", "occurred_at", "id"),  # an item's history
        Index("ix_audit_actor", "actor", "occurred_at", "id"),
        Index("ix_audit_action", "action", "occurred_at", "id"),
        Index("ix_audit_entity", "entity_type", "entity_id", "parent_id", "occurred_at", "id"),
        MYSQL_TABLE_OPTIONS,
    )


class Job(Base):
    """Background work, and the outbox it is dispatched from.

    Rows are inserted in the transaction that commits the media row, so a job
    exists exactly when its item does; brokers only carry job ids, and the row
    decides who runs it (status, lease) and when (run_after).
    """

    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(32))
    media_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # Whether the job is part of making its item (its variants, its web MP4): then it sets the item's
    # processing status and `pending`. A tagging job is not: an item is ready, and stays so, without its tags.
    settles_item: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    status: Mapped[str] = mapped_column(String(16), default="queued")  # queued | processing | done | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=5)
    run_after: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    lease_until: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    last_error: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)

    __table_args__ = (
        Index("ix_jobs_media_id", "media_id"),
        # The claim query: the oldest due job of a status.
        Index("ix_jobs_status_run_after", "status", "run_after"),
        MYSQL_TABLE_OPTIONS,
    )


class Upload(Base):
    """An upload whose bytes arrive apart from its ingest: resumable (tus) or sent straight to the bucket.

    The row is the upload's whole state across requests, processes and restarts: who may continue
    it, where it goes (the target and the form fields, checked at creation), how many bytes are
    persisted (`offset`; `staging` is the byte store's own state for them), who is writing or
    ingesting it now (`lease_token` until `lease_until`), and once finished its outcome (`media_id`, or
    the ingest's problem in `outcome`), kept until `expires_at` so a client that lost the last answer
    can ask for it. The sweeper removes expired rows with their staged bytes.
    """

    __tablename__ = "uploads"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    public_id: Mapped[str] = mapped_column(String(64), unique=True)
    transport: Mapped[str] = mapped_column(String(16))  # tus | s3_multipart | s3_post
    created_by: Mapped[str] = mapped_column(String(128))
    # The creator as the token described them: the ingest (possibly in another request) acts for them.
    principal: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # The target; NULL for a tus partial upload (Upload-Concat: partial), which only the final one places.
    entity_type: Mapped[str | None] = mapped_column(String(32))
    entity_id: Mapped[str | None] = mapped_column(String(64))
    parent_id: Mapped[str | None] = mapped_column(String(64))
    entity_field: Mapped[str | None] = mapped_column(String(32))
    fields: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # filename, alt_text, caption, tags, ...
    length: Mapped[int | None] = mapped_column(BigInteger)  # NULL: deferred (tus creation-defer-length)
    offset: Mapped[int] = mapped_column(BigInteger, default=0)
    concat: Mapped[str | None] = mapped_column(String(8))  # partial | final (tus concatenation)
    state: Mapped[str] = mapped_column(String(16), default="receiving")  # receiving | done | failed
    storage_key: Mapped[str] = mapped_column(ObjectKey)  # where the staged bytes are (media.keys.incoming_key)
    staging: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    lease_token: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    media_id: Mapped[int | None] = mapped_column(BigInteger)
    outcome: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)

    __table_args__ = (
        # The sweeper's scan for expired uploads.
        Index("ix_uploads_expires_at", "expires_at"),
        # The open-uploads limit counts one creator's unfinished uploads.
        Index("ix_uploads_created_by_state", "created_by", "state"),
        MYSQL_TABLE_OPTIONS,
    )


MIGRATION_RUNNING = "running"
MIGRATION_DONE = "done"


class StorageMigration(Base):
    """One `mediahub storage migrate` towards a target store, from the stores its rows recorded.

    Running until every item is on the target and every source copy it verified is deleted; while
    it runs, processes that start read from its `sources` too (runtime.py).
    """

    __tablename__ = "storage_migrations"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    target_type: Mapped[str] = mapped_column(String(8))
    target_bucket: Mapped[str | None] = mapped_column(String(255))
    sources: Mapped[list[list[str | None]]] = mapped_column(JSON, default=list)  # [storage_type, bucket] pairs
    state: Mapped[str] = mapped_column(String(16), default=MIGRATION_RUNNING)
    started_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)

    __table_args__ = (
        Index("ix_storage_migrations_state", "state"),
        MYSQL_TABLE_OPTIONS,
    )


class MigratedObject(Base):
    """The journal of a storage migration: one object of one item, and how far its move got.

    States: `copied` (the target holds a copy this run wrote), `verified` (the target's copy has the
    size and SHA-256 recorded here), `switched` (the item's row points at the target),
    `source_deleted`, and the ends `missing` (no source object), `failed` (`reason`), `dropped` (the
    item was deleted or changed meanwhile; the copies this run made were removed).
    """

    __tablename__ = "storage_migration_objects"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("storage_migrations.id", ondelete="CASCADE"))
    media_id: Mapped[int] = mapped_column(BigInteger)
    storage_key: Mapped[str] = mapped_column(ObjectKey)
    source_type: Mapped[str] = mapped_column(String(8))
    source_bucket: Mapped[str | None] = mapped_column(String(255))
    byte_size: Mapped[int | None] = mapped_column(BigInteger)
    sha256: Mapped[str | None] = mapped_column(String(64))
    digest_from: Mapped[str | None] = mapped_column(String(16))  # "recorded" | "source" (no recorded digest)
    copied: Mapped[bool] = mapped_column(Boolean, default=False)  # written by the migration, not found there
    state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)
    switched_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)

    __table_args__ = (
        UniqueConstraint("run_id", "media_id", "storage_key", name="uq_migration_object"),
        # A run's objects of one state (the switched ones whose sources are due), a page at a time.
        Index("ix_migration_objects_state", "run_id", "state", "id"),
        MYSQL_TABLE_OPTIONS,
    )
