"""Pick the byte store the settings ask for.

Construction does no I/O: the application decides when to call `check()`, so
CLI commands that never touch bytes still start while storage is down.
"""

from __future__ import annotations

from mediahub.config import Settings
from mediahub.storage.base import Storage, public_cache_control
from mediahub.storage.local import LocalStorage
from mediahub.storage.local_staging import LocalStaging
from mediahub.storage.s3 import S3Storage
from mediahub.storage.s3_staging import S3Staging
from mediahub.storage.staging import Staging


def build_storage(settings: Settings) -> Storage:
    """The store the settings describe: where new objects go."""
    return build_store(settings, settings.storage_type, settings.s3_bucket_name,
                       create_bucket=settings.s3_create_bucket)


def build_store(settings: Settings, kind: str, bucket: str | None, *, create_bucket: bool = False) -> Storage:
    """The store rows record as `kind` and `bucket`: MEDIA_ROOT for local disk, else that bucket at the
    settings' S3 endpoint, with their credentials (rows record no endpoint). Another bucket than the settings'
    (one a storage migration moves objects from) has no public address here; its objects' ACLs still follow
    moderation, since they may have been made public under the address it had."""
    if kind == "s3":
        if bucket is None:
            raise ValueError("an S3 store needs a bucket")
        return _s3_storage(settings, bucket, create_bucket)
    return LocalStorage(settings.media_root)


def build_staging(settings: Settings, storage: Storage) -> Staging:
    """Uploads in progress go where their store is: the bucket for S3; for local disk, `staging` among the
    files kept across reboots, since an upload may wait days to be resumed."""
    if isinstance(storage, S3Storage):
        return S3Staging(storage, settings.upload_part_size, settings.temp_dir)
    return LocalStaging(settings.kept_files_directory / "staging")


def _s3_storage(settings: Settings, bucket: str, create_bucket: bool) -> S3Storage:
    """Public URLs are the bucket's (S3_PUBLIC_BASE_URL); CDN_BASE_URL is a CDN in front of the API, not of the
    bucket, so it never names bucket objects (media/urls.py puts it in front of the API's own URLs)."""
    secret = settings.aws_secret_access_key
    own = bucket == settings.s3_bucket_name and settings.storage_type == "s3"
    return S3Storage(
        bucket=bucket,
        endpoint_url=settings.s3_endpoint_url,
        region=settings.s3_region,
        access_key=settings.aws_access_key_id,
        secret_key=secret.get_secret_value() if secret else None,
        public_base_url=settings.s3_public_base_url if own else None,
        keep_acls=not own,
        timeout=settings.s3_timeout_seconds,
        multipart_threshold=settings.s3_multipart_threshold,
        create_bucket=create_bucket,
        cache_control=public_cache_control(settings.public_cache_seconds),
    )
