"""The URL a caller gets for a stored object.

Approved items get stable, cacheable URLs: the CDN/bucket URL on S3 when one is
configured, the unsigned file route on local storage. Everything else (and S3
without a public URL) gets a URL signed for `signed_url_ttl` seconds; callers
only ever see items they are allowed to see, so signing is never a leak.
"""

from __future__ import annotations

from mediahub.config import Settings
from mediahub.db.models import MediaItem
from mediahub.storage.base import Storage

FILES_PATH = "/v1/media/files/"


class MediaUrls:
    def __init__(self, settings: Settings, storage: Storage) -> None:
        self.storage = storage
        self.ttl = settings.signed_url_ttl
        self.files_base = settings.public_base_url.rstrip("/") + FILES_PATH

    def url(self, item: MediaItem, key: str) -> str:
        if item.moderation_status == "approved":
            public = self.storage.public_url(key)
            if public:
                return public
            if self.storage.kind == "local":
                return self.files_base + key
        return self.storage.presign(key, self.ttl)
