"""The URL a caller gets for a stored object.

Approved items get stable, cacheable URLs: the CDN/bucket URL when the store
has one, else the unsigned file route. Everything else gets a URL signed for
`signed_url_ttl` seconds: the store's own where it signs URLs (S3), else the
file route with an HMAC over key and expiry (`storage.signing`), which the route
checks. A rejected item on the file route gets no signature: the route honours
none for it, only the bearer of someone who may see it. Callers only ever see
items they are allowed to see, so signing is never a leak.

File-route URLs start with `base_url`: PUBLIC_BASE_URL when set, else the scheme
and host the request came to (the API); outside a request and without
PUBLIC_BASE_URL they are root-relative paths, since no one knows where a server
will answer. With CDN_BASE_URL (a CDN whose origin is the API), the URLs of approved
items that anyone may fetch (their objects' file route, presets, and signed
transforms, which anyone who holds one may use) start with it instead, and an
approved item on a presigning store gets the unsigned file route rather than a
presigned URL (which differs on every answer, so no cache could keep it); every
URL of an item not approved, signed file URLs included, points at the API itself.
"""

from __future__ import annotations

import time

from mediahub.config import Settings
from mediahub.db.models import MediaItem
from mediahub.media.transform_urls import FORMAT_EXTENSIONS
from mediahub.storage.base import Storage
from mediahub.storage.signing import sign

FILES_PATH = "/v1/media/files"  # the API's file route, which serves objects read from the store
IMAGES_PATH = "/v1/images"  # delivery: presets by name (negotiated or per format) and signed transforms
TRANSFORMS_SEGMENT = "t"  # {IMAGES_PATH}/{public_id}/t/...: an item's signed transforms


class MediaUrls:
    def __init__(self, settings: Settings, storage: Storage, base_url: str | None = None) -> None:
        self.storage = storage
        self.ttl = settings.signed_url_ttl
        self.signing_key = settings.signing_key
        self.base_url = (settings.public_base_url or base_url or "").rstrip("/")
        self.cdn_base_url = settings.cdn_base_url.rstrip("/") if settings.cdn_base_url else None

    def url(self, item: MediaItem, key: str) -> str:
        # The store the row names: while a storage migration moves the item, its objects are still there.
        store = self.storage.store_of(item.storage_type, item.bucket_name)
        if item.moderation_status == "approved":
            public = store.public_url(key)
            if public:
                return public
            if self.cdn_base_url or not store.can_presign:
                return self._file_url(item, key)
        if store.can_presign:
            return store.presign(key, self.ttl)
        if item.moderation_status == "rejected":
            return self._file_url(item, key)
        expires = int(time.time()) + self.ttl
        return f"{self._file_url(item, key)}?expires={expires}&signature={sign(key, expires, self.signing_key)}"

    def preset_url(self, item: MediaItem, preset: str, extension: str | None = None) -> str:
        """The delivery URL of a preset of an image (`original` or a configured size): the best format
        the client accepts, or the one `extension` (jpg, png, webp, avif) names."""
        suffix = f".{extension}" if extension else ""
        return f"{self._images_url(item)}/{preset}{suffix}"

    def preset_urls(self, item: MediaItem, preset: str) -> list[str]:
        """Every delivery URL of one preset: the negotiated one, then one per delivery format."""
        return [self.preset_url(item, preset),
                *(self.preset_url(item, preset, extension) for extension in FORMAT_EXTENSIONS.values())]

    def transform_url(self, item: MediaItem, signature: str, options: str, extension: str,
                      expires: int | None) -> str:
        """The URL of a signed transform (media/transform_urls.py signs it)."""
        query = f"?expires={expires}" if expires is not None else ""
        return f"{self.transform_prefix(item)}{signature}/{options}.{extension}{query}"

    def transform_prefix(self, item: MediaItem) -> str:
        """What every signed transform URL of the item starts with."""
        return f"{self._images_url(item)}/{TRANSFORMS_SEGMENT}/"

    def _base(self, item: MediaItem) -> str:
        """The CDN for an approved item's URLs (anyone may fetch them unsigned), else the API itself."""
        return self.cdn_base_url if self.cdn_base_url and item.moderation_status == "approved" else self.base_url

    def _images_url(self, item: MediaItem) -> str:
        return f"{self._base(item)}{IMAGES_PATH}/{item.public_id}"

    def _file_url(self, item: MediaItem, key: str) -> str:
        return f"{self._base(item)}{FILES_PATH}/{key}"
