"""Which stored objects anyone may read without a signature: exactly those of approved items.

The metadata row is the truth; on S3 with a public base URL the bucket must agree
(`Storage.set_public`), since anonymous readers reach it without asking the API.
A status change updates the objects under the item's row lock before its commit,
so a job adding objects to the item at the same time sees one order of events.
Objects are stored private, so a new object is never public before its item is approved.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from mediahub.db.models import MediaItem
from mediahub.db.repositories import MediaRepository
from mediahub.db.repositories.variants import DeliveryItem
from mediahub.db.repositories.media import lock_item
from mediahub.db.session import Database
from mediahub.errors import MediaHubError
from mediahub.pipeline.image import RAW
from mediahub.storage.base import Storage

log = logging.getLogger(__name__)


def is_public(item: MediaItem | DeliveryItem) -> bool:
    return item.moderation_status == "approved"


def original_is_raw(item: MediaItem | DeliveryItem) -> bool:
    """The upload as sent (metadata and all), waiting for its re-encode: no one reads it, not even the owner."""
    return (item.meta or {}).get("original") == RAW


def readable_keys(item: MediaItem) -> list[str]:
    """The item's objects that its URLs may name: all but a raw original."""
    keys = item.keys()
    return [key for key in keys if key != item.original_key] if original_is_raw(item) else keys


@contextmanager
def following_status(storage: Storage) -> Iterator[Callable[[MediaItem], None]]:
    """Yield `sync(item)`: call it with the item's row locked, after its status is set, before the commit.

    When the transaction then fails, objects this made public are made private
    again (best effort), so a rolled-back approval leaves nothing exposed.
    """
    widened: list[str] = []

    def sync(item: MediaItem) -> None:
        keys = readable_keys(item)
        storage.set_public(keys, is_public(item))
        if original_is_raw(item):
            storage.set_public([item.original_key], False)
        if is_public(item):
            widened.extend(keys)

    try:
        yield sync
    except BaseException:
        if widened:
            try:
                storage.set_public(widened, False)
            except MediaHubError:
                log.warning("could not hide the objects of a failed approval: %s", widened, exc_info=True)
        raise


def publish_new(storage: Storage, item: MediaItem) -> None:
    """After an upload's commit: an auto-approved item's objects become readable where its URLs point.

    A failure is logged, not raised: the upload is stored, and the next moderation
    decision on the item sets its objects' readability again.
    """
    if not is_public(item):
        return
    try:
        storage.set_public(readable_keys(item), True)
    except MediaHubError:
        log.warning("could not make the objects of #%s public", item.id, exc_info=True)


def sync_all(database: Database, storage: Storage) -> tuple[int, int]:
    """Set every item's objects' readability from its status: (public items, private items).

    For objects stored before readability was managed (or before a public base URL
    was configured). One short locked transaction per item, so decisions taken
    meanwhile are neither lost nor undone.
    """
    with database.session() as session:
        ids = list(MediaRepository(session).ids())
    counts = {True: 0, False: 0}
    for media_id in ids:
        with following_status(storage) as sync, database.session() as session:
            lock_item(session, media_id)
            item = MediaRepository(session).get(media_id)
            if item is None:
                continue  # deleted meanwhile
            sync(item)
            counts[is_public(item)] += 1
    return counts[True], counts[False]
