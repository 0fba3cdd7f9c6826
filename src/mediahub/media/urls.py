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
will answer.
"""

from __future__ import annotations

import time

from mediahub.config import Settings
from mediahub.db.models import MediaItem
from mediahub.storage.base import Storage
from mediahub.storage.signing import sign

FILES_PATH = "/v1/media/files"  # the API's file route, which serves objects read from the store
IMAGES_PATH = "/v1/images"  # delivery: presets by name (negotiated or per format) and signed transforms


class MediaUrls:
    def __init__(self, settings: Settings, storage: Storage, base_url: str | None = None) -> None:
        self.storage = storage
        self.ttl = settings.signed_url_ttl
        self.signing_key = settings.signing_key
        self.base_url = (settings.public_base_url or base_url or "").rstrip("/")

    def url(self, item: MediaItem, key: str) -> str:
        if item.moderation_status == "approved":
            public = self.storage.public_url(key)
            if public:
                return public
        if self.storage.can_presign:
            return self.storage.presign(key, self.ttl)
        if item.moderation_status in ("approved", "rejected"):
            return self._file_url(key)
        expires = int(time.time()) + self.ttl
        return f"{self._file_url(key)}?expires={expires}&signature={sign(key, expires, self.signing_key)}"

    def preset_url(self, item: MediaItem, preset: str, extension: str | None = None) -> str:
        """The delivery URL of a preset of an image (`original` or a configured size): the best format
        the client accepts, or the one `extension` (jpg, png, webp, avif) names."""
        suffix = f".{extension}" if extension else ""
        return f"{self.base_url}{IMAGES_PATH}/{item.public_id}/{preset}{suffix}"

    def transform_url(self, item: MediaItem, signature: str, options: str, extension: str,
                      expires: int | None) -> str:
        """The URL of a signed transform (media/transform_urls.py signs it)."""
        query = f"?expires={expires}" if expires is not None else ""
        return f"{self.base_url}{IMAGES_PATH}/{item.public_id}/t/{signature}/{options}.{extension}{query}"

    def _file_url(self, key: str) -> str:
        return f"{self.base_url}{FILES_PATH}/{key}"
