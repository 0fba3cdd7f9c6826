"""Which stored object a file URL names, and whether this request may read it.

Approved items' objects are public; any other object needs a valid HMAC
signature with an unexpired time (`storage.signing`), or the bearer token of a
caller who may see the item (its uploader, the entity's owners, moderators).
Only unsigned reads of approved items may be kept by shared caches. The content
type always comes from the media row, never from the key's extension.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from mediahub.db.models import MediaItem
from mediahub.db.repositories import MediaRepository, MemberRepository, VariantRepository
from mediahub.db.session import Database
from mediahub.errors import Forbidden, MediaHubError, NotFound
from mediahub.media import access
from mediahub.media.access import Principal
from mediahub.media.exposure import original_is_raw
from mediahub.storage.keys import check_key
from mediahub.storage.signing import verify


@dataclass(frozen=True)
class ServedObject:
    key: str
    content_type: str
    public: bool  # approved and read without a signature: cacheable by anyone


def _missing(key: str) -> NotFound:
    """The same answer for unknown keys and hidden objects, so keys cannot be probed."""
    return NotFound("no such file, or it needs a signed URL or the bearer token of someone who may see it",
                    code="file_not_found", key=key[:200])


class FileAccess:
    def __init__(self, database: Database, signing_key: bytes) -> None:
        self.database = database
        self.signing_key = signing_key

    def resolve(self, key: str, expires: int | None, signature: str | None,
                principal: Principal | None = None) -> ServedObject:
        """The object behind `key` if this request may read it; NotFound/Forbidden otherwise."""
        try:
            check_key(key)
        except MediaHubError:
            raise _missing(key) from None
        signed = signature is not None or expires is not None
        # A signature is checked before the row is looked up, so a bad one says nothing about the key.
        if signed and not (expires is not None and signature and verify(key, expires, signature, self.signing_key)):
            raise Forbidden("the link is invalid or has expired", code="invalid_signature")
        with self.database.session() as session:
            found = self._lookup(session, key)
            if found is None:
                raise _missing(key)
            item, content_type = found
            approved = item.moderation_status == "approved"
            # A rejected item's signed links die with the decision: they are capabilities that
            # were handed out and could be handed on; its owners and moderators read it by bearer.
            honoured = signed and item.moderation_status != "rejected"
            if not (approved or honoured or access.can_view(principal, item, MemberRepository(session))):
                raise _missing(key)
        return ServedObject(key, content_type, approved and not signed)

    @staticmethod
    def _lookup(session: Session, key: str) -> tuple[MediaItem, str] | None:
        """The item that stores `key`, and the object's content type (two indexed lookups at most)."""
        item = MediaRepository(session).get_by_original_key(key)
        if item is not None:
            return None if original_is_raw(item) else (item, item.content_type)
        return VariantRepository(session).find_by_key(key)
