"""Duplicate detection: exact (same bytes, same pixels) and near (perceptual) duplicates.

Signals, strongest first:

* `sha256`  - the uploaded bytes are identical: distance 0, no confirmation needed;
* `pixels`  - the upright 8-bit display pixels (and size) are identical: distance 0;
* `perceptual` - a pHash pair within `threshold` bits (whole picture, centre window,
  or a shifted/scaled window against the centre: crop-tolerant), confirmed by the
  correlation of grey signatures; flat pictures never match (see
  `pipeline/fingerprint.py`).

Exact signals are indexed columns. Perceptual candidates depend on the scope:

* entity - a gallery holds at most a few hundred items: every fingerprinted row of
  the entity is compared in full (every crop window against every centre);
* uploader, global - the process's `DedupIndex` (dedup/index.py): the whole
  and centre pHashes of every row in a file shared by the host's processes, synced
  from the database before each lookup, multi-index hashed. It returns rows whose
  whole or centre hash is within `threshold` (exactly what `linear_scan` returns, any
  threshold) and stored centres within `threshold` of one of the upload's crop windows
  with which they share a 16-bit band (best effort for crops: a band shared by chance
  alone would make thousands of candidates in a large library, each loaded and
  compared). A lookup's cost hardly grows with the table, where a linear scan's grows
  with every row (`python -m bench.dedup_lookup` measures the index).
  Without an index at hand (`index=None`) the same candidates come from
  `scan_candidates`, which reads every row in scope.

Candidates are loaded from the database in their scope, which also drops rows deleted
since the index saw them, then confirmed with `Fingerprint.compare`. The queries are
`FingerprintRepository`'s (db/repositories/fingerprints.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy.orm import Session

from mediahub.db.models import NO_PARENT, MediaItem
from mediahub.db.repositories import FingerprintRepository, MediaRepository
from mediahub.db.repositories.fingerprints import HashKind
from mediahub.dedup.index import DedupIndex
from mediahub.errors import Conflict, NotFound
from mediahub.pipeline.fingerprint import BANDS, Fingerprint, bands, from_bands, hamming

ScopeKind = Literal["entity", "uploader", "global"]
Policy = Literal["reject", "flag", "allow"]

PAGE = 500  # rows at a time
SCAN_PAGE = 5000


# ---------------------------------------------------------------------------- what is compared


@dataclass(frozen=True)
class Probe:
    """What one picture is looked up by: byte digest, pixel digest, fingerprint."""

    sha256: str | None = None
    pixel_sha256: str | None = None
    fingerprint: Fingerprint | None = None
    exclude_id: int | None = None  # a stored item never matches itself

    @classmethod
    def of_item(cls, item: MediaItem) -> Probe:
        thumb = item.dedup_thumb
        return cls(item.sha256, item.pixel_sha256, Fingerprint(thumb) if thumb else None, item.id)

    @classmethod
    def of_upload(cls, sha256: str, processed: Any) -> Probe:
        """From a ProcessedImage, or a ProcessedVideo (its poster's fingerprint, no pixel digest)."""
        return cls(sha256, getattr(processed, "pixel_sha256", None), getattr(processed, "fingerprint", None))


def row_columns(fingerprint: Fingerprint | None, pixel_digest: str | None) -> dict[str, Any]:
    """The MediaItem column values that make a row findable."""
    values: dict[str, Any] = {"pixel_sha256": pixel_digest}
    if fingerprint is None:
        return values
    values["dedup_thumb"] = fingerprint.thumb
    for kind, window in (("w", fingerprint.whole), ("c", fingerprint.centre)):
        for band, value in enumerate(bands(window.hash)):
            values[f"hash_{kind}{band}"] = value
    return values


@dataclass(frozen=True)
class Scope:
    """Which rows a lookup considers: plain data, which the repositories turn into conditions."""

    kind: ScopeKind
    entity_type: str | None = None
    entity_id: str | None = None
    uploaded_by: str | None = None
    parent_id: str | None = None  # of a nested kind's entity

    @classmethod
    def of(cls, kind: ScopeKind, *, entity_type: str, entity_id: str, uploaded_by: str | None,
           parent_id: str | None = None) -> Scope:
        """The scope an upload to (entity_type, entity_id) by `uploaded_by` is checked in.

        An upload without an uploader cannot be matched by uploader: it falls back to its entity.
        """
        if kind == "global":
            return cls("global")
        if kind == "uploader" and uploaded_by is not None:
            return cls("uploader", uploaded_by=uploaded_by)
        return cls.entity(entity_type, entity_id, parent_id)

    @classmethod
    def entity(cls, entity_type: str, entity_id: str, parent_id: str | None = None) -> Scope:
        return cls("entity", entity_type, entity_id, parent_id=parent_id)

    def holds(self, item: MediaItem) -> bool:
        """Whether `item` is in this entity scope."""
        return (self.kind == "entity" and (item.entity_type, item.entity_id) == (self.entity_type, self.entity_id)
                and (item.parent_id or NO_PARENT) == (self.parent_id or NO_PARENT))

    @classmethod
    def everywhere(cls) -> Scope:
        return cls("global")


@dataclass(frozen=True)
class Match:
    item: MediaItem
    distance: int
    reason: Literal["sha256", "pixels", "perceptual"]


# ---------------------------------------------------------------------------- candidates


def linear_scan(session: Session, kind: HashKind, value: int, threshold: int,
                scope: Scope | None = None) -> dict[int, int]:
    """The reference: id -> distance of every row in scope (None: every row) whose `kind` hash is
    within `threshold`, all compared."""
    out: dict[int, int] = {}
    for page in FingerprintRepository(session).band_pages([kind], SCAN_PAGE, scope):
        for media_id, *parts in page:
            if (d := hamming(from_bands(parts), value)) <= threshold:
                out[media_id] = d
    return out


def scan_candidates(session: Session, fingerprint: Fingerprint, threshold: int,
                    scope: Scope | None = None) -> set[int]:
    """What `DedupIndex.candidates` returns, by comparing every row in scope (no index at hand; None: every row)."""
    whole, centre = fingerprint.whole.hash, fingerprint.centre.hash
    by_band: list[dict[int, list[int]]] = [{} for _ in range(BANDS)]  # band b's value -> the windows with it
    for window in fingerprint.windows:
        for b, part in enumerate(bands(window.hash)):
            by_band[b].setdefault(part, []).append(window.hash)
    found = set()
    for page in FingerprintRepository(session).band_pages(["w", "c"], SCAN_PAGE, scope):
        for media_id, *parts in page:
            if hamming(from_bands(parts[:BANDS]), whole) <= threshold:
                found.add(media_id)
            elif parts[BANDS] is not None:
                stored = from_bands(parts[BANDS:])
                if hamming(stored, centre) <= threshold or any(
                        hamming(stored, window) <= threshold
                        for b, part in enumerate(parts[BANDS:]) for window in by_band[b].get(part, ())):
                    found.add(media_id)
    return found


# ---------------------------------------------------------------------------- finding duplicates


def _perceptual_candidates(session: Session, fingerprint: Fingerprint, scope: Scope, threshold: int,
                           index: DedupIndex | None) -> set[int]:
    if scope.kind == "entity":
        # A gallery is small: compare with every fingerprinted row of the entity.
        return FingerprintRepository(session).fingerprinted_ids(scope)
    if index is None:
        return scan_candidates(session, fingerprint, threshold, scope)
    return index.candidates(fingerprint, threshold)  # of any scope: loading them applies this one


def find_similar(session: Session, probe: Probe | MediaItem, scope: Scope, threshold: int,
                 limit: int | None = 20, *, index: DedupIndex | None = None) -> list[Match]:
    """Duplicates of `probe` in `scope`, best first: exact matches (distance 0), then by distance.

    `probe` is a `Probe` (an upload) or a stored `MediaItem` (which never matches itself).
    `index`: the process's DedupIndex, for the uploader and global scopes (None: a scan).
    """
    if isinstance(probe, MediaItem):
        probe = Probe.of_item(probe)
    rows = FingerprintRepository(session)
    best: dict[int, Match] = {}

    def offer(item: MediaItem, distance: int, reason: Any) -> None:
        if item.id == probe.exclude_id:
            return
        current = best.get(item.id)
        if current is None or distance < current.distance:
            best[item.id] = Match(item, distance, reason)

    for reason, digest in (("sha256", probe.sha256), ("pixels", probe.pixel_sha256)):
        if digest:
            for item in rows.with_digest(reason, digest, scope):
                offer(item, 0, reason)
    fingerprint = probe.fingerprint
    if fingerprint is not None and not fingerprint.flat:
        candidates = _perceptual_candidates(session, fingerprint, scope, threshold, index) - set(best)
        for item in rows.load(candidates, scope):  # an index may name deleted or out-of-scope rows
            if item.dedup_thumb is None:
                continue
            distance = fingerprint.compare(Fingerprint(item.dedup_thumb), threshold)
            if distance is not None:
                offer(item, distance, "perceptual")
    order = {"sha256": 0, "pixels": 1, "perceptual": 2}
    matches = sorted(best.values(), key=lambda m: (m.distance, order[m.reason], m.item.id))
    return matches if limit is None else matches[:limit]


def check_duplicate(session: Session, probe: Probe, scope: Scope, threshold: int, *,
                    entity: Scope | None = None, index: DedupIndex | None = None,
                    visible: Callable[[MediaItem], bool] | None = None,
                    present: Callable[[MediaItem], bool] | None = None) -> Match | None:
    """The duplicate of an upload that decides its fate, or None. Read-only; runs before any byte is stored.

    The closest one in the `entity` scope when there is one there (only those are refused),
    otherwise the closest one in the scope that is `visible` to the uploader (None: all are):
    a match the uploader may not see must not be named to them, not even by its existence.
    `present(item)`: whether the item's original is still stored, asked of the match about to be chosen
    only. One whose object is lost is never the duplicate: refusing the upload, or pointing it at that
    item, would spread the loss to every new copy of the picture; the upload is stored anew instead.
    """
    found = find_similar(session, probe, scope, threshold, limit=None, index=index)

    def stored(match: Match) -> bool:
        return present is None or present(match.item)

    if entity is not None:
        for match in found:
            if entity.holds(match.item) and stored(match):
                return match
    return next((match for match in found if (visible is None or visible(match.item)) and stored(match)), None)


@dataclass(frozen=True)
class Decision:
    """What ingest does with an upload after the check: metadata to add, or a Conflict raised."""

    metadata: dict[str, Any] = field(default_factory=dict)


def decide(match: Match | None, *, policy: Policy, entity: Scope, visible: bool) -> Decision:
    """Apply the policy. Only a duplicate in the upload's own `entity` is refused; one found in
    another entity (scopes uploader/global) is stored and flagged instead.

    `visible`: whether the uploader may see the match. If not, the refusal names no item, and
    nothing is recorded on the new row (its metadata is shown to whoever sees the row).
    """
    if match is None or policy == "allow":
        return Decision()
    item = match.item
    same_entity = entity.holds(item)
    if policy == "reject" and same_entity and not visible:
        raise Conflict("this picture is already stored here", code="duplicate")
    if not visible:
        return Decision()
    if policy == "reject" and same_entity:
        raise Conflict(
            f"this {'file' if match.reason == 'sha256' else 'picture'} is already stored as {item.public_id}",
            code="duplicate",
            duplicate_of=item.public_id,
            duplicate_id=item.id,  # what GET /v1/media/{id} takes: a client can show the item it duplicates
            distance=match.distance,
        )
    return Decision({"duplicate_of": item.public_id, "duplicate_distance": match.distance,
                     "duplicate_reason": match.reason})


def similar_items(session: Session, media_id: int | str, *, threshold: int, limit: int | None = 20,
                  scope: Scope | None = None, index: DedupIndex | None = None) -> list[tuple[MediaItem, int]]:
    """(item, distance) pairs like media `media_id` (numeric id or public id), closest first.

    For `GET /v1/media/{id}/similar`: global scope unless given; the item itself is left out.
    Raises NotFound for an unknown id.
    """
    media = MediaRepository(session)
    item = media.get(media_id) if isinstance(media_id, int) else media.get_by_public_id(media_id)
    if item is None:
        raise NotFound(f"no media item {media_id}", code="media_not_found")
    matches = find_similar(session, item, scope or Scope.everywhere(), threshold, limit, index=index)
    return [(m.item, m.distance) for m in matches]


# ---------------------------------------------------------------------------- library scan


@dataclass
class ScanReport:
    items: int = 0
    groups: list[list[dict[str, Any]]] = field(default_factory=list)


def _record(item: MediaItem, distance: int, reason: str) -> dict[str, Any]:
    return {"id": item.id, "public_id": item.public_id, "entity": f"{item.entity_type}:{item.entity_id}",
            "field": item.entity_field, "distance": distance, "reason": reason}


def scan(session: Session, threshold: int, progress: Callable[[int, int], None] | None = None, *,
         index: DedupIndex | None = None) -> ScanReport:
    """Duplicate groups over the whole library (global scope), each listed from its oldest item.

    Every item is looked up once (exact digests and perceptual matches); pairs are joined
    with union-find, so a group is a connected set of duplicate pairs.
    """
    media = MediaRepository(session)
    total = media.count()
    parent: dict[int, int] = {}
    edge: dict[int, tuple[int, str]] = {}  # member -> (distance, reason) of the pair that joined it

    def root(node: int) -> int:
        while parent.setdefault(node, node) != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    done, last_id = 0, 0
    while True:
        page = media.page(last_id, PAGE)
        for item in page:
            for match in find_similar(session, item, Scope.everywhere(), threshold, limit=None, index=index):
                if match.item.id < item.id:
                    continue  # each pair once: from its newer member
                a, b = root(item.id), root(match.item.id)
                if a != b:
                    parent[max(a, b)] = min(a, b)
                previous = edge.get(match.item.id)
                if previous is None or match.distance < previous[0]:
                    edge[match.item.id] = (match.distance, match.reason)
            done += 1
            if progress:
                progress(done, total)
        if len(page) < PAGE:
            break
        last_id = page[-1].id
    members: dict[int, list[int]] = {}
    for node in parent:
        members.setdefault(root(node), []).append(node)
    report = ScanReport(items=done)
    for ids in sorted((sorted(m) for m in members.values() if len(m) > 1), key=lambda m: m[0]):
        items = {i.id: i for i in FingerprintRepository(session).load(ids)}
        report.groups.append([
            _record(items[i], *(edge.get(i, (0, "first")) if n else (0, "first")))
            for n, i in enumerate(ids)
        ])
    return report
