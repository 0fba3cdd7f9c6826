"""Objects in an S3-compatible bucket (AWS, MinIO, moto).

Path-style addressing works with every S3-compatible server; short timeouts and
two attempts keep a dead endpoint from stalling requests. Every backend fault
leaves this module as `StorageUnavailable`, a missing object as `NotFound`.

Writes are conditional (`If-None-Match: *`, on PutObject and on completing a
multipart upload), so S3 itself refuses to replace an object, atomically, and
`put` raises `KeyExists` as on local disk. A server that ignores the header
(some S3-compatibles do) overwrites silently instead.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from mediahub.errors import InvalidInput, NotFound, StorageUnavailable
from mediahub.storage.base import (
    PRIVATE_CACHE_CONTROL,
    KeyExists,
    ObjectInfo,
    Storage,
    Usage,
    check_after,
    check_expires_in,
    check_prefix,
    check_range,
    open_source,
    usage_of,
)
from mediahub.storage.keys import check_key

MB = 1024 * 1024
READ_CHUNK = 64 * 1024
DELETE_BATCH = 1000  # the DeleteObjects maximum
MAX_PUT_PARTS = 2  # parts of one multipart put in memory (and in flight) at once
ACLS_DISABLED = "AccessControlListNotSupported"  # a bucket whose object ownership is enforced
NOT_FOUND_CODES = frozenset({"404", "NoSuchKey", "NotFound"})
MISSING_BUCKET_CODES = frozenset({"404", "NoSuchBucket", "NotFound"})
PRESIGN_OPERATIONS = {"GET": "get_object", "PUT": "put_object"}
MAX_PARTS = 10_000  # S3's part numbers: 1..10000
# CompleteMultipartUpload refusing the parts it was given (ETags, order, sizes), as opposed to a backend fault.
PART_ERROR_CODES = frozenset({"InvalidPart", "InvalidPartOrder", "EntityTooSmall"})
# The operations that publish an object: a single PUT, or the completion of a multipart upload.
WRITE_EVENTS = ("before-parameter-build.s3.PutObject", "before-parameter-build.s3.CompleteMultipartUpload")


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _cause_code(exc: StorageUnavailable) -> str:
    """The S3 error code behind a translated fault ("" for network faults)."""
    cause = exc.__cause__
    return _error_code(cause) if isinstance(cause, ClientError) else ""


@contextmanager
def _translated(action: str, key: str | None = None) -> Iterator[None]:
    """Map botocore faults onto the storage contract's errors."""
    target = key or "bucket"
    try:
        yield
    except ClientError as exc:
        code = _error_code(exc)
        if key is not None and code in NOT_FOUND_CODES:
            raise NotFound(f"no object {key}", code="object_not_found") from exc
        if code == "PreconditionFailed" and action == "put":
            raise KeyExists(target) from exc
        if code == "InvalidRange":
            raise InvalidInput(f"range outside object {key}", code="range_not_satisfiable") from exc
        raise StorageUnavailable(f"S3 {action} {target} failed: {code}", code="storage_unavailable") from exc
    except BotoCoreError as exc:
        raise StorageUnavailable(f"S3 {action} {target} failed: {exc}", code="storage_unavailable") from exc


@contextmanager
def _multipart_errors(key: str) -> Iterator[None]:
    """A multipart upload's own refusals, inside `_translated` (which maps every other fault)."""
    try:
        yield
    except ClientError as exc:
        code = _error_code(exc)
        if code == "NoSuchUpload":
            raise NotFound(f"no multipart upload at {key}", code="multipart_upload_not_found") from exc
        if code in PART_ERROR_CODES:
            raise InvalidInput(f"S3 refused the parts of {key}: {code}", code="invalid_part") from exc
        if code == "PreconditionFailed":
            raise KeyExists(key) from exc
        raise


def _check_part_number(number: int) -> int:
    if not 1 <= number <= MAX_PARTS:
        raise InvalidInput(f"part numbers are 1..{MAX_PARTS}", code="invalid_part_number")
    return number


@dataclass(frozen=True)
class Part:
    """One uploaded part of a multipart upload, as S3 lists it."""

    number: int
    etag: str
    size: int


@dataclass(frozen=True)
class PresignedPost:
    """A browser form upload: POST `fields` and then the file (as the form's last part) to `url`."""

    url: str
    fields: dict[str, str]


def _create_only(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
    """Make an upload refuse to replace an object. A presigned PUT URL stays as its signer asked for it."""
    if not context.get("is_presign_request"):
        params["IfNoneMatch"] = "*"


class S3Storage(Storage):
    kind = "s3"
    can_presign = True

    def __init__(
        self,
        bucket: str,
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        access_key: str | None = None,
        secret_key: str | None = None,
        public_base_url: str | None = None,
        timeout: float = 10.0,
        multipart_threshold: int = 16 * MB,
        create_bucket: bool = False,
        cache_control: str | None = None,
        keep_acls: bool = False,
    ) -> None:
        """`cache_control` is stored on every object: what the bucket (or a CDN) sends with unsigned reads.
        `keep_acls`: `set_public` sets the objects' ACLs even without a public base URL (a bucket objects are
        moved from, which may hold objects made public under an address these settings do not name)."""
        self.bucket = bucket
        self.location = f"s3:{endpoint_url or 'aws'}/{bucket}"
        self.region = region
        self._public_base_url = public_base_url.rstrip("/") if public_base_url else None
        self._create_bucket = create_bucket
        self._keep_acls = keep_acls
        self._put_args = {"CacheControl": cache_control} if cache_control else {}
        # A large object goes up in parts of 8 MiB, each read into memory before it is sent: boto3's defaults
        # (10 sent at once, 10 read ahead) grow the process by 80 MiB with any file of that size or more.
        self._transfer = TransferConfig(multipart_threshold=multipart_threshold, max_concurrency=MAX_PUT_PARTS)
        self._transfer.max_in_memory_upload_chunks = MAX_PUT_PARTS
        # Own session: the default one is shared module state and not thread-safe to build.
        self._client = boto3.session.Session().client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=region,
            aws_access_key_id=access_key,
            aws_secret_access_key=secret_key,
            config=Config(
                s3={"addressing_style": "path"},
                signature_version="s3v4",
                connect_timeout=timeout,
                read_timeout=timeout,
                retries={"max_attempts": 2, "mode": "standard"},
            ),
        )
        for event in WRITE_EVENTS:
            self._client.meta.events.register(event, _create_only)

    @property
    def client(self) -> Any:
        """The boto3 client on this bucket, for what builds on the store (staged uploads): its calls add
        `If-None-Match: *` to object writes as the store's own do; wrap them in `_translated`."""
        return self._client

    # Writes

    def put(self, key: str, source: BinaryIO | Path | bytes, content_type: str) -> ObjectInfo:
        """Upload (multipart above the threshold); S3 publishes only complete objects, private until `set_public`.

        The managed transfer accepts no `IfNoneMatch` argument: `_create_only` adds it to the requests.
        """
        check_key(key)
        with open_source(source) as stream, _translated("put", key):
            self._client.upload_fileobj(
                stream, self.bucket, key, ExtraArgs={"ContentType": content_type, **self._put_args},
                Config=self._transfer,
            )
        return self.stat(key)

    def delete_many(self, keys: Iterable[str]) -> list[str]:
        keys = [check_key(key) for key in keys]  # validate all before deleting any
        failed: list[str] = []
        for offset in range(0, len(keys), DELETE_BATCH):
            batch = keys[offset : offset + DELETE_BATCH]
            with _translated("delete"):
                response = self._client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": [{"Key": key} for key in batch], "Quiet": True}
                )
            failed.extend(error["Key"] for error in response.get("Errors", []))
        return failed

    # Reads

    def get(self, key: str) -> bytes:
        return b"".join(self.open_range(key))

    def open_range(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Request eagerly (so errors surface at the call), then stream the body lazily."""
        check_key(key)
        check_range(start, end)
        args: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if start or end is not None:  # a plain GET also serves empty objects, which have no byte 0
            args["Range"] = f"bytes={start}-{'' if end is None else end}"
        with _translated("get", key):
            body = self._client.get_object(**args)["Body"]
        return self._stream(key, body)

    def _stream(self, key: str, body: Any) -> Iterator[bytes]:
        try:
            with _translated("get", key):
                yield from body.iter_chunks(READ_CHUNK)
        finally:
            body.close()

    def stat(self, key: str) -> ObjectInfo:
        check_key(key)
        with _translated("stat", key):
            head = self._client.head_object(Bucket=self.bucket, Key=key)
        return ObjectInfo(
            key=key,
            size=head["ContentLength"],
            content_type=head.get("ContentType"),
            last_modified=_utc(head.get("LastModified")),
            etag=head.get("ETag"),
        )

    def presign(self, key: str, expires_in: int, *, method: str = "GET", content_type: str | None = None) -> str:
        """Signed locally; no request is made, so this works even while S3 is down."""
        check_key(key)
        operation = PRESIGN_OPERATIONS.get(method.upper())
        if operation is None:
            raise InvalidInput(f"cannot presign {method}", code="unsupported_operation")
        params = {"Bucket": self.bucket, "Key": key}
        if operation == "put_object" and content_type:
            params["ContentType"] = content_type
        if operation == "get_object":
            params["ResponseCacheControl"] = PRIVATE_CACHE_CONTROL
        with _translated("presign", key):
            return self._client.generate_presigned_url(
                operation, Params=params, ExpiresIn=check_expires_in(expires_in)
            )

    def set_public(self, keys: Iterable[str], public: bool) -> None:
        """Per-object ACLs: anonymous GETs (and a CDN without its own origin access) read only public-read objects.

        Without a public base URL nothing is ever public: every URL is presigned (unless `keep_acls`).
        """
        keys = [check_key(key) for key in keys]
        if self._public_base_url is None and not self._keep_acls:
            return
        acl = "public-read" if public else "private"
        for key in keys:
            try:
                with _translated("acl", key):
                    self._client.put_object_acl(Bucket=self.bucket, Key=key, ACL=acl)
            except NotFound:
                continue  # deleted meanwhile: nothing left to expose
            except StorageUnavailable as exc:
                if self._public_base_url is None and _cause_code(exc) == ACLS_DISABLED:
                    return  # a bucket without ACLs: none of its objects can be public through one
                raise

    def list(self, prefix: str = "", after: str | None = None) -> Iterator[ObjectInfo]:
        check_prefix(prefix)
        return self._list(prefix, check_after(after))

    def _list(self, prefix: str, after: str | None) -> Iterator[ObjectInfo]:
        """ListObjectsV2 returns keys in UTF-8 binary order, a page of 1000 at a time."""
        start = {"StartAfter": after} if after is not None else {}
        pages = self._client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix, **start)
        with _translated("list"):
            for page in pages:
                for item in page.get("Contents", []):
                    yield ObjectInfo(
                        key=item["Key"],
                        size=item["Size"],
                        last_modified=_utc(item.get("LastModified")),
                        etag=item.get("ETag"),
                    )

    def usage(self, prefix: str = "") -> Usage:
        return usage_of(self.list(prefix))

    def check(self) -> None:
        """HeadBucket; create the bucket when it is missing and creation is allowed."""
        try:
            with _translated("check"):
                self._client.head_bucket(Bucket=self.bucket)
        except StorageUnavailable as exc:
            if not (self._create_bucket and _cause_code(exc) in MISSING_BUCKET_CODES):
                raise
            self._make_bucket()

    def _make_bucket(self) -> None:
        """us-east-1 rejects an explicit LocationConstraint; every other region needs one.

        With a public base URL the bucket must honour per-object ACLs (`set_public`): new AWS
        buckets ignore them and block public ones unless created and configured to allow them.
        """
        args: dict[str, Any] = {"Bucket": self.bucket}
        if self.region != "us-east-1":
            args["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
        if self._public_base_url:
            args["ObjectOwnership"] = "ObjectWriter"
        try:
            with _translated("create"):
                self._client.create_bucket(**args)
        except StorageUnavailable as exc:
            if _cause_code(exc) != "BucketAlreadyOwnedByYou":  # otherwise we lost a harmless race
                raise
            return
        if self._public_base_url:
            with _translated("create"):
                self._client.put_public_access_block(
                    Bucket=self.bucket,
                    PublicAccessBlockConfiguration={"BlockPublicAcls": False, "IgnorePublicAcls": False,
                                                    "BlockPublicPolicy": True, "RestrictPublicBuckets": True},
                )

    def public_url(self, key: str) -> str | None:
        check_key(key)
        return f"{self._public_base_url}/{key}" if self._public_base_url else None

    # Uploads sent by clients straight to the bucket, at URLs signed here (media/direct_uploads.py)

    def create_multipart(self, key: str) -> str:
        """Start a multipart upload at `key`; its upload id. Its completion will not replace an object."""
        check_key(key)
        with _translated("create multipart", key):
            return self._client.create_multipart_upload(Bucket=self.bucket, Key=key)["UploadId"]

    def presign_part(self, key: str, upload_id: str, number: int, expires_in: int) -> str:
        """A URL to PUT part `number` of the upload to; signed locally, no request is made."""
        check_key(key)
        params = {"Bucket": self.bucket, "Key": key, "UploadId": upload_id, "PartNumber": _check_part_number(number)}
        with _translated("presign", key):
            return self._client.generate_presigned_url("upload_part", Params=params,
                                                       ExpiresIn=check_expires_in(expires_in))

    def list_parts(self, key: str, upload_id: str) -> list[Part]:
        """Every part uploaded so far, by number; `NotFound` when the upload is no more (completed or aborted)."""
        check_key(key)
        pages = self._client.get_paginator("list_parts").paginate(Bucket=self.bucket, Key=key, UploadId=upload_id)
        with _translated("list parts", key), _multipart_errors(key):
            return [Part(part["PartNumber"], part["ETag"], part["Size"])
                    for page in pages for part in page.get("Parts", [])]

    def complete_multipart(self, key: str, upload_id: str, parts: Sequence[tuple[int, str]]) -> None:
        """Assemble the object from the parts (number, ETag) in ascending order. `KeyExists` if the key holds
        an object, `InvalidInput` (`invalid_part`) when S3 refuses the parts."""
        check_key(key)
        listed = [{"PartNumber": _check_part_number(number), "ETag": etag} for number, etag in parts]
        with _translated("complete multipart", key), _multipart_errors(key):
            self._client.complete_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id,
                                                   MultipartUpload={"Parts": listed})

    def abort_multipart(self, key: str, upload_id: str) -> None:
        """Drop the upload and its parts; one that is no more (completed or aborted) is not an error."""
        check_key(key)
        try:
            with _translated("abort multipart", key), _multipart_errors(key):
                self._client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
        except NotFound:
            return

    def presign_post(self, key: str, expires_in: int, max_bytes: int) -> PresignedPost:
        """A form upload of 1..`max_bytes` bytes to exactly `key` (S3 checks the signed policy's
        `content-length-range` and key); signed locally."""
        check_key(key)
        with _translated("presign", key):
            post = self._client.generate_presigned_post(
                self.bucket, key, Conditions=[["content-length-range", 1, max_bytes]],
                ExpiresIn=check_expires_in(expires_in),
            )
        return PresignedPost(post["url"], post["fields"])


def _utc(moment: datetime | None) -> datetime | None:
    """botocore's times are in dateutil's UTC zone; HTTP dates (and the rest of the service) want datetime's."""
    return None if moment is None else moment.astimezone(timezone.utc)
