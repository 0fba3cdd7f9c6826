"""Delivery: the object behind a preset URL or a signed transform URL, made once and then stored.

A preset URL (`/v1/images/{public_id}/{preset}`, `original` or a configured size) answers the
best format the client names in `Accept` (AVIF, then WebP, then the preset's JPEG or PNG), or the
one its extension names. A transform URL answers its signed options. Either is gated like the
item: approved items for anyone, others for those who may see them (a signature is never enough
to see a pending or rejected item).

A rendition that does not exist yet is rendered from the stored original and kept as a variant
row (kind `transform`, named by the preset, or by a digest of what a transform renders: never by
its signature or spelling), so every later request is one indexed query. Concurrent misses for one
rendition render it once: threads of a process wait on the first, processes on a claim row in the
database. Renders run `max_concurrent` at a time per process; up to `queue` more requests wait (for
a slot, or for a rendition being made), the rest are answered 503 with Retry-After. Each render has
a deadline inside libvips. Write order: bytes, then the row's commit; a failed commit deletes the
bytes. An item keeps at most MAX_STORED_TRANSFORMS such renditions.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import timedelta

from mediahub.config import Settings, VariantSpec, usable_cores
from mediahub.db.models import PRESET, TRANSFORM, MediaItem
from mediahub.db.repositories import MediaRepository, MemberRepository, VariantRepository, VariantRow
from mediahub.db.repositories.variants import DeliveryItem, Rendition
from mediahub.db.repositories.media import lock_item
from mediahub.db.repositories.render_claims import RenderClaimRepository
from mediahub.db.session import Database
from mediahub.errors import Busy, DatabaseUnavailable, Forbidden, InvalidInput, LimitExceeded, MediaHubError, NotFound
from mediahub.formats import CONTENT_TYPES, EXTENSIONS, FORMAT_OF_CONTENT_TYPE
from mediahub.media import access, exposure
from mediahub.media.access import Principal
from mediahub.media.keys import variant_key
from mediahub.media.transform_urls import EXTENSION_FORMATS, FORMAT_EXTENSIONS, UNSIGNED, sign, verify
from mediahub.media.urls import MediaUrls
from mediahub.pipeline import watermark
from mediahub.pipeline.focal import FACES_SOURCE, FocalPoint
from mediahub.pipeline.transform import (
    Encoding,
    Rendered,
    RenderFailed,
    RenderTimeout,
    Transform,
    render,
)
from mediahub.pipeline.variants import output_size
from mediahub.storage.base import ObjectInfo, Storage

ORIGINAL = "original"  # the preset that names the stored original itself
NEGOTIATED = ("avif", "webp")  # preferred, in this order, over the base format when the client names them
CLAIM_POLL_SECONDS = 0.05

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Delivered:
    """What to send: a stored object, its type, what the rows know of it, and how it may be cached."""

    info: ObjectInfo  # key, and the size, strong ETag and time when a row records them (else the store's)
    content_type: str
    public: bool  # approved: shared caches may keep it
    negotiated: bool  # chosen by Accept: the answer varies with it
    expires: int | None = None  # a signed URL's expiry: no cache keeps it longer
    provisional: bool = False  # a stand-in while the best format cannot be made: no cache keeps it

    @property
    def key(self) -> str:
        return self.info.key


@dataclass(frozen=True)
class SignedTransform:
    url: str
    urls: dict[str, str]  # one URL per format, for caches that ignore Vary
    width: int
    height: int
    format: str | None  # None: negotiated
    expires_at: int | None


def accepted_types(accept: str | None) -> set[str]:
    """The media types `accept` names with a quality above zero (wildcards as given)."""
    named: set[str] = set()
    for part in (accept or "").split(","):
        media_type, _, parameters = part.strip().partition(";")
        quality = 1.0
        for parameter in parameters.split(";"):
            name, _, value = parameter.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if quality > 0 and media_type:
            named.add(media_type.strip().lower())
    return named


def negotiate(accept: str | None, base: str) -> str:
    """AVIF or WebP when the client names it (a wildcard is not enough: old clients send */*), else `base`."""
    named = accepted_types(accept)
    return next((fmt for fmt in NEGOTIATED if CONTENT_TYPES[fmt] in named), base)


class RenderGate:
    """At most `concurrent` renders at once in this process and `queue` requests waiting (for a slot, or for a
    rendition another request or process is making); the rest are Busy. Every thread a delivery request
    holds while it waits is counted, so waiters cannot take the server's worker threads from other requests."""

    def __init__(self, concurrent: int, queue: int, wait_seconds: float) -> None:
        self._slots = threading.BoundedSemaphore(concurrent)
        self._lock = threading.Lock()
        self._waiting = 0
        self.queue = queue
        self.wait_seconds = wait_seconds

    @contextmanager
    def waiting(self) -> Iterator[None]:
        with self._lock:
            if self._waiting >= self.queue:
                raise _busy("renders")
            self._waiting += 1
        try:
            yield
        finally:
            with self._lock:
                self._waiting -= 1

    @contextmanager
    def slot(self) -> Iterator[None]:
        if not self._slots.acquire(blocking=False):
            with self.waiting():
                acquired = self._slots.acquire(timeout=self.wait_seconds)
            if not acquired:
                raise _busy("renders")
        try:
            yield
        finally:
            self._slots.release()


def _busy(what: str, retry_after: int = 1) -> Busy:
    return Busy(f"too many {what} in progress; try again shortly", code="render_busy", retry_after=retry_after)


def _not_found(public_id: str) -> NotFound:
    """One answer for unknown ids and hidden items, so ids cannot be probed."""
    return NotFound("no such image, or it needs the bearer token of someone who may see it",
                    code="image_not_found", public_id=public_id[:64])


def _etag(content_hash: str | None, key: str) -> str:
    """Strong: the rendition's content hash, else a hash of its key (keys are never reused for other bytes)."""
    return f'"{(content_hash or hashlib.sha256(key.encode()).hexdigest())[:32]}"'


def _delivered(row: Rendition, public: bool, negotiated: bool) -> Delivered:
    info = ObjectInfo(row.storage_key, row.byte_size, last_modified=row.created_at,
                      etag=_etag(row.content_hash, row.storage_key))
    return Delivered(info, row.content_type, public, negotiated)


def _transform_base(png_presets: bool) -> str:
    """A transform's format for clients that name neither AVIF nor WebP: PNG where the presets keep alpha."""
    return "png" if png_presets else "jpeg"


def _require_pixels(item: DeliveryItem) -> None:
    """A raw original (an upload waiting for its re-encode) is read by no one, and rendered from by no one."""
    if exposure.original_is_raw(item):
        raise Busy("the image is still being processed", code="not_ready", retry_after=5)


class Delivery:
    def __init__(self, settings: Settings, database: Database, storage: Storage) -> None:
        self.settings = settings
        self.database = database
        self.storage = storage
        self.presets: dict[str, VariantSpec] = {spec.name: spec for spec in settings.image_sizes}
        self.deadline = settings.render_deadline_seconds
        # The longest a claim lasts (a render and the store's writes), and the longest a request waits for
        # a rendition being made (a render slot, then the render).
        self.claim_lifetime = timedelta(seconds=self.deadline + 10)
        self.longest_render = 2 * self.deadline + 10
        # Two renders a core by default: a render's decode is mostly one thread, and its reads and writes leave
        # the core idle meanwhile.
        self.gate = RenderGate(settings.max_concurrent_renders or 2 * usable_cores(), settings.render_queue, self.deadline)
        self.encoding = Encoding(jpeg_trellis=settings.transform_jpeg_trellis, webp_effort=settings.transform_webp_effort)
        self._owner = f"{socket.gethostname()[:40]}:{os.getpid()}"
        self._inflight: dict[tuple[int, str, str], threading.Event] = {}
        self._inflight_lock = threading.Lock()
        self.renders = 0  # renditions this process has rendered on request (a metric: single flight holds)

    # Reading
    def preset(self, public_id: str, name: str, extension: str | None, accept: str | None,
               principal: Principal | None) -> Delivered:
        item = self._visible(public_id, principal, [name])
        wanted = EXTENSION_FORMATS.get(extension) if extension else None
        if item.media_type != "image" or item.meta.get("animated"):
            return self._stored(item, name, wanted, negotiated=False)  # as stored: no format makes a video
        if name != ORIGINAL and name not in self.presets:
            raise NotFound(f"no preset {name!r}", code="no_such_preset", presets=[ORIGINAL, *self.presets])
        if extension and wanted is None:
            raise NotFound("a preset URL ends in .jpg, .png, .webp or .avif, or has no extension",
                           code="no_such_format")
        base = self._base_format(item, name)
        if wanted == "png" and base != "png":
            # A lossless copy of a photograph is many times its size and costs the most to make: never on request.
            raise NotFound("this image has no PNG rendition: ask for .jpg, .webp or .avif", code="no_such_format")
        negotiated = extension is None
        fmt = wanted or negotiate(accept, base)
        if name == ORIGINAL and fmt == base:
            return self._stored(item, name, None, negotiated)
        if name == ORIGINAL and (item.width or 0) * (item.height or 0) > self.settings.max_transform_pixels:
            if negotiated:
                return self._stored(item, name, None, negotiated)
            raise LimitExceeded("the original is too large to convert", code="transform_too_large",
                                limit=self.settings.max_transform_pixels)
        try:
            return self._made(item, name, fmt, lambda: self._preset_transform(item, name, fmt), negotiated)
        except Busy:
            if not negotiated or fmt == base:
                raise
            # Renders are busy: the format every client shows, stored already, for now (never kept by caches).
            return replace(self._stored(item, name, None, negotiated), provisional=True)

    def transform(self, public_id: str, signature: str, text: str, extension: str, expires: int | None,
                  accept: str | None, principal: Principal | None) -> Delivered:
        if extension not in EXTENSION_FORMATS:
            raise NotFound("a transform URL ends in .auto, .jpg, .png, .webp or .avif", code="no_such_format")
        if signature == UNSIGNED:
            if not self.settings.unsigned_transforms:
                raise Forbidden("unsigned transforms are off: ask POST /v1/media/{id}/transform-url for a URL",
                                code="unsigned_transform")
        elif not verify(self.settings.transform_keys, signature, public_id, text, extension, expires):
            raise Forbidden("the link is invalid or has expired", code="invalid_signature")
        options = Transform.parse(text)
        item = self._visible(public_id, principal, ())
        if signature == UNSIGNED and not exposure.is_public(item):
            raise _not_found(public_id)
        self._check_limits(item, options)
        fmt = EXTENSION_FORMATS[extension] or negotiate(accept, _transform_base(item.has_png_presets))
        mark = watermark.fingerprint(watermark.for_field(self.settings, item.entity_type, item.entity_field))
        name = options.result_name(item.width or 1, item.height or 1, fmt, mark or "")
        made = self._made(item, name, fmt, lambda: options, EXTENSION_FORMATS[extension] is None)
        return replace(made, expires=expires)

    # Signing
    def transform_url(self, media_id: int, options: Transform, fmt: str | None, expires_in: int | None,
                      principal: Principal | None, urls: MediaUrls) -> SignedTransform:
        with self.database.session() as session:
            item = access.require_view(principal, MediaRepository(session).get(media_id), MemberRepository(session))
        self._check_limits(item, options)
        expires = int(time.time()) + expires_in if expires_in else None
        key = self.settings.transform_keys[0]

        def url(extension: str) -> str:
            signature = sign(key, item.public_id, options.text, extension, expires)
            return urls.transform_url(item, signature, options.text, extension, expires)

        width, height = options.output_size(item.width or 1, item.height or 1)
        return SignedTransform(
            url=url(FORMAT_EXTENSIONS[fmt] if fmt else "auto"),
            urls={name: url(FORMAT_EXTENSIONS[name])
                  for name in (_transform_base(any(v.format == "png" for v in item.presets)), *NEGOTIATED)},
            width=width, height=height, format=fmt, expires_at=expires)

    # Parts
    def _visible(self, public_id: str, principal: Principal | None, names: Iterable[str]) -> DeliveryItem:
        """The item with its renditions of `names`, if this caller may see it (one query for an approved item)."""
        with self.database.session() as session:
            item = VariantRepository(session).for_delivery(public_id, names)
            if item is None:
                raise _not_found(public_id)
            if not exposure.is_public(item):
                full = MediaRepository(session).get(item.id)  # None: deleted since the lookup
                if full is None or not access.can_view(principal, full, MemberRepository(session)):
                    raise _not_found(public_id)
        return item

    @staticmethod
    def _base_format(item: DeliveryItem, name: str) -> str:
        """The format every client shows: the original's own, or the preset's stored JPEG/PNG."""
        if name == ORIGINAL:
            return FORMAT_OF_CONTENT_TYPE.get(item.content_type, "jpeg")
        return "png" if any(r.name == name and r.format == "png" and r.kind == PRESET for r in item.renditions) else (
            "jpeg")

    def _stored(self, item: DeliveryItem, name: str, fmt: str | None, negotiated: bool) -> Delivered:
        """An object the item stores already: the original, or a preset row (a video's poster sizes)."""
        public = exposure.is_public(item)
        if name == ORIGINAL:
            _require_pixels(item)
            if fmt is not None and CONTENT_TYPES.get(fmt) != item.content_type:
                raise NotFound(f"the original is not stored as {fmt}", code="no_such_format")
            # The store knows the original's size and time; its ETag is from the key (never reused for other bytes).
            return Delivered(ObjectInfo(item.original_key, 0, etag=_etag(None, item.original_key)), item.content_type,
                             public, negotiated)
        base = fmt or self._base_format(item, name)
        rows = [r for r in item.renditions if r.kind == PRESET and r.name == name and r.format == base]
        if not rows:
            raise NotFound(f"no {name} rendition in that format", code="no_such_format")
        return _delivered(rows[0], public, negotiated)

    def _preset_transform(self, item: DeliveryItem, name: str, fmt: str) -> Transform:
        quality = {"jpeg": self.settings.jpeg_quality, "webp": self.settings.webp_quality,
                   "avif": self.settings.avif_quality}.get(fmt, 0)
        width, height = item.width or 1, item.height or 1
        if name == ORIGINAL:
            return Transform(width, height, "fill", "center", quality)
        spec = self.presets[name]
        # The size of the preset's stored JPEG/PNG, which may be the original's (a re-encode was not smaller):
        # every format of a preset has one size, the one srcset lists.
        stored = next((r for r in item.renditions if r.kind == PRESET and r.name == name
                       and r.format in ("jpeg", "png")), None)
        out_w, out_h = (stored.width, stored.height) if stored is not None else output_size(width, height, spec)
        return Transform(out_w, out_h, "cover" if spec.crop else "fill", "focal", quality)

    def _check_limits(self, item: MediaItem | DeliveryItem, options: Transform) -> None:
        if item.media_type != "image" or not item.width or not item.height:
            raise InvalidInput("only images are transformed", code="not_an_image")
        if item.width * item.height > self.settings.max_transform_source_pixels:
            raise LimitExceeded("the image is too large to transform; use its presets", code="source_too_large",
                                limit=self.settings.max_transform_source_pixels)
        width, height = options.output_size(item.width, item.height)
        if max(width, height) > self.settings.max_transform_side or width * height > self.settings.max_transform_pixels:
            raise LimitExceeded("the result would be too large", code="transform_too_large",
                                max_side=self.settings.max_transform_side, max_pixels=self.settings.max_transform_pixels)

    @staticmethod
    def _focal(item: DeliveryItem, gravity: str) -> tuple[float, float] | None:
        """The point a crop keeps in frame; None: find one by attention."""
        point = FocalPoint.of_metadata(item.meta)
        if gravity == "center":
            return 0.5, 0.5
        if gravity == "smart" or (gravity == "face" and not (point and point.source == FACES_SOURCE)):
            return None
        return point.xy if point else (0.5, 0.5)

    def _made(self, item: DeliveryItem, name: str, fmt: str, options: Callable[[], Transform],
              negotiated: bool) -> Delivered:
        """The stored rendition (name, fmt): from the item's rows as loaded, else found or made by `_obtain`."""
        row = next((r for r in item.renditions if r.name == name and r.format == fmt), None)
        if row is None:
            row = self._obtain(item, name, fmt, lambda: self._render(item, options(), fmt, name))
        return _delivered(row, exposure.is_public(item), negotiated)

    def _render(self, item: DeliveryItem, options: Transform, fmt: str, name: str) -> Rendered:
        """`name`: a preset's, or a transform's digest."""
        _require_pixels(item)
        source = self.storage.get(item.original_key)
        mark = watermark.for_field(self.settings, item.entity_type, item.entity_field)
        preset = name if name == ORIGINAL or name in self.presets else None
        marked = watermark.applies(mark, options.output_size(item.width or 1, item.height or 1)[0], preset)
        try:
            return render(source, (item.width or 1, item.height or 1), options, fmt,
                          focal=self._focal(item, options.gravity), seconds=self.deadline, encoding=self.encoding,
                          finish=(lambda image: watermark.apply(image, mark)) if marked else None)
        except RenderTimeout as exc:
            raise Busy(str(exc), code="render_timeout", retry_after=5) from None
        except RenderFailed as exc:
            raise InvalidInput(f"the stored image could not be rendered: {exc}", code="render_failed") from None

    # Single flight
    def _find(self, media_id: int, name: str, fmt: str) -> Rendition | None:
        with self.database.session() as session:
            return VariantRepository(session).rendition(media_id, name, fmt)

    def _obtain(self, item: DeliveryItem, name: str, fmt: str, make: Callable[[], Rendered]) -> Rendition:
        """The stored rendition (name, fmt) of the item, made by `make` if no one has made it yet."""
        found = self._find(item.id, name, fmt)
        if found is not None:
            return found
        ident = (item.id, name, fmt)
        with self._inflight_lock:
            event = self._inflight.get(ident)
            leading = event is None
            if event is None:
                event = self._inflight[ident] = threading.Event()
        if not leading:
            with self.gate.waiting():
                event.wait(self.longest_render)
            found = self._find(item.id, name, fmt)
            if found is None:
                raise _busy("renders of this image")
            return found
        try:
            return self._render_once(item, name, fmt, make)
        finally:
            with self._inflight_lock:
                del self._inflight[ident]
            event.set()

    def _render_once(self, item: DeliveryItem, name: str, fmt: str, make: Callable[[], Rendered]) -> Rendition:
        """Claim the rendition once a render slot is ours (so a claim lasts one render: a dead process's claim
        is stale after the deadline), render and store it; while another process holds the claim, wait for its
        result without a slot."""
        owner = f"{self._owner}:{uuid.uuid4().hex[:12]}"
        give_up = time.monotonic() + self.longest_render
        while True:
            with self.gate.slot():
                if self._claim(item.id, name, fmt, owner):
                    try:
                        found = self._find(item.id, name, fmt)  # made elsewhere between our miss and our claim
                        if found is not None:
                            return found
                        self._check_room(item.id)
                        with self._inflight_lock:
                            self.renders += 1
                        return self._store(item, name, fmt, make())
                    finally:
                        self._release(item.id, name, fmt, owner)
            with self.gate.waiting():
                found = self._wait_for_claimant(item.id, name, fmt, give_up)
            if found is not None:
                return found

    def _claim(self, media_id: int, name: str, fmt: str, owner: str) -> bool:
        try:
            with self.database.session() as session:
                return RenderClaimRepository(session).claim(media_id, name, fmt, owner)
        except DatabaseUnavailable:
            # InnoDB picks a deadlock victim among claimants racing a release: as if another held the claim.
            return False

    def _release(self, media_id: int, name: str, fmt: str, owner: str) -> None:
        try:
            with self.database.session() as session:
                RenderClaimRepository(session).release(media_id, name, fmt, owner)
        except DatabaseUnavailable:
            log.warning("could not release the render claim on %s/%s.%s: it goes stale", media_id, name, fmt)

    def _check_room(self, media_id: int) -> None:
        """An item keeps at most MAX_STORED_TRANSFORMS renditions made on request: the store is not a cache
        anyone holding a signed URL can fill."""
        with self.database.session() as session:
            stored = VariantRepository(session).count_kind(media_id, TRANSFORM)
        if stored >= self.settings.max_stored_transforms:
            raise LimitExceeded(f"this image has {stored} renditions made on request, the most it may keep",
                                code="too_many_transforms", limit=self.settings.max_stored_transforms)

    def _wait_for_claimant(self, media_id: int, name: str, fmt: str, give_up: float) -> Rendition | None:
        """The rendition once another process has stored it; None when its claim ended (or went stale) first."""
        while time.monotonic() < give_up:
            time.sleep(CLAIM_POLL_SECONDS)
            found = self._find(media_id, name, fmt)
            if found is not None:
                return found
            with self.database.session() as session:
                claims = RenderClaimRepository(session)
                claims.drop_stale(media_id, name, fmt, self.claim_lifetime)
                if claims.held_since(media_id, name, fmt) is None:
                    return None
        raise _busy("renders of this image")

    def _store(self, item: DeliveryItem, name: str, fmt: str, rendered: Rendered) -> Rendition:
        """Bytes first, then the row; the bytes are deleted if the row is not committed, or if another process
        committed its own rendition first (then that one is answered)."""
        key = variant_key(item.original_key, f"{name}-{secrets.token_hex(4)}", EXTENSIONS[fmt])
        row = VariantRow(name, fmt, key, rendered.width, rendered.height, len(rendered.data), rendered.content_type,
                         TRANSFORM, rendered.content_hash)
        # Where the row records the item's objects: a storage migration may not have moved it yet.
        self.storage.store_of(*item.store).put(key, rendered.data, rendered.content_type)
        try:
            with self.database.session() as session:
                lock_item(session, item.id)
                current = MediaRepository(session).get(item.id)
                if current is None:
                    raise _not_found(item.public_id)
                if (current.original_key, FocalPoint.of_metadata(current.meta), current.store) != (
                        item.original_key, FocalPoint.of_metadata(item.meta), item.store):
                    raise _busy("changes to this image")  # rendered from what the item no longer is, or moved
                added = VariantRepository(session).add_once(item.id, row)
                if added and exposure.is_public(current):
                    self.storage.set_public([key], True)
        except BaseException:
            self._discard(key)
            raise
        if not added:
            self._discard(key)
        stored = self._find(item.id, name, fmt)
        if stored is None:
            raise _busy("renders of this image")  # deleted or replaced meanwhile
        return stored

    def _discard(self, key: str) -> None:
        try:
            self.storage.delete(key)
        except MediaHubError:
            log.warning("could not delete %s, an unused rendition: `mediahub verify --repair` removes it", key)
