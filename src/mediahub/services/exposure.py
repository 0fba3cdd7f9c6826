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
from mediahub.errors import MediaHubError
from mediahub.storage.base import Storage

log = logging.getLogger(__name__)


def is_public(item: MediaItem) -> bool:
    return item.moderation_status == "approved"


@contextmanager
def following_status(storage: Storage) -> Iterator[Callable[[MediaItem], None]]:
    """Yield `sync(item)`: call it with the item's row locked, after its status is set, before the commit.

    When the transaction then fails, objects this made public are made private
    again (best effort), so a rolled-back approval leaves nothing exposed.
    """
    widened: list[str] = []

    def sync(item: MediaItem) -> None:
        keys = item.keys()
        storage.set_public(keys, is_public(item))
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
        storage.set_public(item.keys(), True)
    except MediaHubError:
        log.warning("could not make the objects of #%s public", item.id, exc_info=True)
