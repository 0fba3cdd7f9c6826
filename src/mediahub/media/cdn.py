"""Purging the CDN in front of the API (CDN_BASE_URL) of an approved item's URLs once they are stale.

A reject (or a hide on reports), a delete, a replaced original or variants and a focal-point change
make what the CDN keeps under an approved item's URLs wrong. The transaction of the change queues
one `cdn_purge` job per URL the API gave out for the item before the change (built by `MediaUrls`,
the one place URLs are made), and one for the prefix of its transform results; after the commit
each job makes one POST to CDN_PURGE_URL and is retried with the jobs' backoff until the hook
answers 2xx. An item that was not approved has no URL a CDN may keep: nothing to purge. Without
CDN_PURGE_URL nothing is queued, and the CDN's copies expire within PUBLIC_CACHE_SECONDS.

A purge job names no item (`media_id` is None): it is not work on the item, so it never shows in
the item's processing status, and it outlives the item's deletion.
"""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy.orm import Session

from mediahub.config import Settings
from mediahub.db.models import MediaItem
from mediahub.db.repositories.job_queue import enqueue
from mediahub.media.exposure import is_public, readable_keys
from mediahub.media.delivery import ORIGINAL
from mediahub.media.job_kinds import CDN_PURGE, Dispatch, dispatch_committed
from mediahub.media.urls import MediaUrls
from mediahub.storage.base import Storage

# Why the URLs went stale: the `reason` of the hook's body.
REJECT = "reject"  # the item left `approved` (a decision, an edit awaiting moderation, a hide on reports)
DELETE = "delete"
REPLACE = "replace"  # its original (a raw upload's re-encode) or its variants (a reprocess) were replaced
FOCAL = "focal"  # its focal point moved: every crop of it changes

class PurgeRefused(Exception):
    """The purge hook answered, but not with a 2xx: the job fails and is retried."""


class CdnPurge:
    def __init__(self, settings: Settings, storage: Storage, dispatch: Dispatch | None = None) -> None:
        self.enabled = settings.cdn_purge_url is not None
        self.urls = MediaUrls(settings, storage)  # on CDN_BASE_URL, which CDN_PURGE_URL requires
        self.presets = [*(size.name for size in settings.image_sizes), ORIGINAL]
        self.max_attempts = settings.job_max_attempts
        self.dispatch = dispatch  # None: queued purges wait for a worker's sweeper

    def public_urls(self, item: MediaItem) -> list[str]:
        """The item's URLs as the API gives them out now: its objects' (the original and the presets; transform
        results are reached through their prefix), and each preset's delivery URLs in every format."""
        listed = {item.original_key, *(variant.storage_key for variant in item.presets)}
        urls = [self.urls.url(item, key) for key in readable_keys(item) if key in listed]
        if item.media_type == "image":
            for preset in self.presets:
                urls += self.urls.preset_urls(item, preset)
        return list(dict.fromkeys(urls))

    def queue(self, session: Session, item: MediaItem, reason: str) -> list[int]:
        """Queue the purge of the item's URLs in the caller's transaction: call it before the change
        (a delete, a status, a new original or focal point), while the item still has the URLs to purge.
        The ids of the jobs, to `send` once the transaction has committed."""
        if not self.enabled or not is_public(item):
            return []
        bodies: list[dict[str, Any]] = [{"url": url, "reason": reason} for url in self.public_urls(item)]
        bodies.append({"prefix": self.urls.transform_prefix(item), "reason": reason})
        return [enqueue(session, CDN_PURGE, payload=body, max_attempts=self.max_attempts).id for body in bodies]

    def send(self, job_ids: list[int]) -> None:
        """Hand the purge jobs to whatever runs jobs, once the change that queued them has committed."""
        dispatch_committed(self.dispatch, job_ids)


def call_purge_hook(settings: Settings, body: dict[str, Any]) -> None:
    """One POST of `body` to CDN_PURGE_URL; an error or an answer other than 2xx raises (the job retries)."""
    if settings.cdn_purge_url is None:
        raise PurgeRefused("CDN_PURGE_URL is no longer set")
    token = settings.cdn_purge_token
    headers = {"Authorization": f"Bearer {token.get_secret_value()}"} if token else {}
    response = httpx.post(settings.cdn_purge_url, json=body, headers=headers,
                          timeout=settings.cdn_purge_timeout_seconds)
    if not response.is_success:
        raise PurgeRefused(f"the CDN purge hook answered {response.status_code} for {body}")
