"""The URL a caller gets for a stored object.

Approved items get stable, cacheable URLs: the CDN/bucket URL on S3 when one is
configured, the unsigned file route on local storage. Everything else (and S3
without a public URL) gets a URL signed for `signed_url_ttl` seconds; callers
only ever see items they are allowed to see, so signing is never a leak.

URLs of the API's own file route start with `base_url`: PUBLIC_BASE_URL when set,
else the scheme and host the request came to (the API); outside a request and
without PUBLIC_BASE_URL they are root-relative paths, since no one knows where a
server will answer.
"""

from __future__ import annotations

from mediahub.config import Settings
from mediahub.db.models import MediaItem
from mediahub.storage.base import Storage

FILES_PATH = "/v1/media/files/"


class MediaUrls:
    def __init__(self, settings: Settings, storage: Storage, base_url: str | None = None) -> None:
        self.storage = storage
        self.ttl = settings.signed_url_ttl
        self.base_url = (settings.public_base_url or base_url or "").rstrip("/")

    def url(self, item: MediaItem, key: str) -> str:
        if item.moderation_status == "approved":
            public = self.storage.public_url(key)
            if public:
                return public
        if self.storage.kind == "local" and item.moderation_status in ("approved", "rejected"):
            # Rejected: the file route honours no signature for it, only the bearer of someone who may see it.
            return self.base_url + FILES_PATH + key
        return self._absolute(self.storage.presign(key, self.ttl))

    def _absolute(self, url: str) -> str:
        """Local storage signs root-relative file-route URLs when no public base URL is configured."""
        return self.base_url + url if url.startswith("/") else url
