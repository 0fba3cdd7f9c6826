"""Moderation on every database: unapproved uploads take their place only when approved; reports.

An item that is not approved never replaces a single slot's approved item nor demotes an
approved primary; the public keeps seeing the approved one until a moderator approves the
new one (then the old one's objects are purged) or rejects it (then nothing changes).
A user's flag is a report: it hides an item only at FLAG_HIDE_THRESHOLD distinct reporters.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from mediahub.errors import MediaHubError
from mediahub.media.access import EntityRef, Principal
from mediahub.media.manage import MediaService
from mediahub.media.moderation import ModerationService
from tests.media.conftest import make_runtime
from tests.media.helpers import reload, stored_keys, upload
from tests.support.corpus import CORPUS_DIR

PHOTO = CORPUS_DIR / "images/good/jpeg_hopper.jpg"
OTHER_PHOTO = CORPUS_DIR / "images/good/webp_flower.webp"
MODERATOR = Principal("MOD-1", frozenset({"user", "moderator"}))


@pytest.fixture
def runtime(db, local_storage, tmp_path):
    """SQLite, PostgreSQL and MariaDB, with local storage (S3: test_ingest's backend pairs)."""
    runtime = make_runtime(db, local_storage, tmp_path)
    yield runtime
    runtime.jobs.close()


def _moderation(runtime, hide_threshold: int = 3, report_rate_limit: int = 0) -> ModerationService:
    return ModerationService(runtime.database, runtime.storage, runtime.cdn, hide_threshold=hide_threshold,
                             report_rate_limit=report_rate_limit)


def _public(runtime, entity: str, field: str) -> list[tuple[int, bool]]:
    """(id, is_primary) of what an anonymous caller lists."""
    entity_type, entity_id = entity.split(":")
    page = MediaService(runtime.database, runtime.storage, runtime.cdn).list_entity(
        EntityRef.parse(entity_type, entity_id), None, field=field, moderation_status=None, is_primary=None,
        offset=0, limit=100)
    return [(view.item.id, view.item.is_primary) for view in page.items]


def _upload(runtime, target: str, uploader: str, *, verified: bool = False, is_primary: bool = False, path=PHOTO):
    return upload(runtime, path, target, uploaded_by=uploader, verified=verified, is_primary=is_primary,
                  allow_duplicate=True)


def test_a_pending_avatar_replaces_the_approved_one_only_when_approved(runtime):
    moderation = _moderation(runtime)
    approved = _upload(runtime, "user:U1:avatar", "U1", verified=True)
    first_try = _upload(runtime, "user:U1:avatar", "U1")
    assert first_try.moderation_status == "pending"
    assert _public(runtime, "user:U1", "avatar") == [(approved.id, True)]
    assert set(approved.keys()) <= stored_keys(runtime), "nothing of the approved item is removed"
    assert not first_try.is_primary and first_try.claims_primary

    second_try = _upload(runtime, "user:U1:avatar", "U1", path=OTHER_PHOTO)  # supersedes the uploader's own try
    assert reload(runtime, first_try) is None and not set(first_try.keys()) & stored_keys(runtime)
    moderation.decide(second_try.id, MODERATOR, "rejected", "not a face")
    assert _public(runtime, "user:U1", "avatar") == [(approved.id, True)]  # a rejection changes nothing
    assert set(approved.keys()) <= stored_keys(runtime)

    third_try = _upload(runtime, "user:U1:avatar", "U1")
    assert reload(runtime, second_try) is None  # the uploader's rejected try went too
    moderation.decide(third_try.id, MODERATOR, "approved", None)
    assert _public(runtime, "user:U1", "avatar") == [(third_try.id, True)]
    assert reload(runtime, approved) is None
    assert stored_keys(runtime) == set(third_try.keys()), "the replaced item's objects are purged on approval"


def test_candidates_of_other_uploaders_wait_beside_each_other(runtime):
    """A builder's logo: one member's pending upload does not remove another's."""
    moderation = _moderation(runtime)
    approved = _upload(runtime, "builder:B1:logo", "ALICE", verified=True)
    bobs = _upload(runtime, "builder:B1:logo", "BOB")
    carols = _upload(runtime, "builder:B1:logo", "CAROL", path=OTHER_PHOTO)
    assert all(reload(runtime, item) is not None for item in (approved, bobs, carols))
    assert _public(runtime, "builder:B1", "logo") == [(approved.id, True)]

    moderation.decide(carols.id, MODERATOR, "approved", None)  # the slot shows one approved item: the rest go
    assert _public(runtime, "builder:B1", "logo") == [(carols.id, True)]
    assert reload(runtime, approved) is None and reload(runtime, bobs) is None
    assert stored_keys(runtime) == set(carols.keys())


def test_a_pending_primary_claim_waits_for_approval(runtime):
    media = MediaService(runtime.database, runtime.storage, runtime.cdn)
    primary = _upload(runtime, "property:P1:gallery", "OWNER", verified=True, is_primary=True)
    claim = _upload(runtime, "property:P1:gallery", "GRANTEE", is_primary=True)
    other = _upload(runtime, "property:P1:gallery", "GRANTEE", path=OTHER_PHOTO)
    assert (primary.id, True) in _public(runtime, "property:P1", "gallery")

    # The uploader asks again by PATCH: still only a claim.
    grantee = Principal("GRANTEE")
    view = media.update(other.id, grantee, {"is_primary": True})
    assert not view.item.is_primary and view.item.claims_primary
    assert reload(runtime, primary).is_primary

    media.update(claim.id, MODERATOR, {"moderation_status": "rejected"})
    assert reload(runtime, primary).is_primary and not reload(runtime, claim).is_primary

    media.update(other.id, MODERATOR, {"moderation_status": "approved"})  # the PATCH route's decision
    # The new primary comes first.
    assert _public(runtime, "property:P1", "gallery") == [(other.id, True), (primary.id, False)]
    assert not reload(runtime, other).claims_primary


def test_an_approved_upload_replaces_at_once(runtime):
    old = _upload(runtime, "user:U1:avatar", "U1")
    new = _upload(runtime, "user:U1:avatar", "U1", verified=True)
    assert reload(runtime, old) is None and reload(runtime, new).is_primary
    assert stored_keys(runtime) == set(new.keys())


def test_dismissing_reports_approves_only_an_item_the_reports_hid(runtime):
    """A flag raised by a moderator (or by the automated checks) is not the reports': dismissing them closes them
    and leaves that flag; with no open report, a dismissal decides nothing."""
    moderation = _moderation(runtime, hide_threshold=1)
    flagged = _upload(runtime, "property:P1:gallery", "OWNER", verified=True)
    moderation.decide(flagged.id, MODERATOR, "flagged", "looks like a stock photo")
    moderation.report(flagged.id, Principal("OWNER"), "please look again")
    assert moderation.dismiss(flagged.id, MODERATOR).moderation_status == "flagged"
    assert moderation.queue(MODERATOR, 0, 10)[0][0].open_reports == 0

    hidden = _upload(runtime, "property:P2:gallery", "OWNER", verified=True, path=OTHER_PHOTO)
    assert moderation.report(hidden.id, Principal("U1"), None).moderation_status == "flagged"
    assert moderation.dismiss(hidden.id, MODERATOR).moderation_status == "approved"
    moderation.decide(hidden.id, MODERATOR, "flagged", None)
    assert moderation.dismiss(hidden.id, MODERATOR).moderation_status == "flagged"  # nothing open to dismiss


def test_reports_hide_only_at_the_threshold_of_distinct_reporters(runtime):
    moderation = _moderation(runtime, hide_threshold=3)
    item = _upload(runtime, "property:P1:gallery", "OWNER", verified=True)
    for _ in range(5):  # one reporter, again and again: one report
        assert moderation.report(item.id, Principal("U1"), "spam").moderation_status == "approved"
    assert moderation.report(item.id, Principal("U2"), None).moderation_status == "approved"
    [entry], total = moderation.queue(MODERATOR, 0, 10)
    assert (entry.item.id, entry.open_reports, total) == (item.id, 2, 1)
    assert [(r.reporter, r.reason) for r in entry.reports] == [("U1", "spam"), ("U2", None)]
    assert moderation.report(item.id, Principal("U3"), "spam").moderation_status == "flagged"
    assert _public(runtime, "property:P1", "gallery") == []

    # A moderator restores it: the reports close, and the same three reporting again hide nothing.
    moderation.decide(item.id, MODERATOR, "approved", None)
    for sub in ("U1", "U2", "U3"):
        assert moderation.report(item.id, Principal(sub), "still spam").moderation_status == "approved"
    assert moderation.queue(MODERATOR, 0, 10)[0][0].open_reports == 3  # the moderator still sees them

    # Dismissed as well; three new reporters hide it again, dismissing shows it again.
    moderation.dismiss(item.id, MODERATOR)
    assert moderation.queue(MODERATOR, 0, 10) == ([], 0)
    for sub in ("U4", "U5"):
        moderation.report(item.id, Principal(sub), None)
    assert moderation.report(item.id, Principal("U6"), None).moderation_status == "flagged"
    assert moderation.dismiss(item.id, MODERATOR).moderation_status == "approved"
    assert _public(runtime, "property:P1", "gallery") == [(item.id, False)]


def test_threshold_zero_never_hides_and_reports_are_rate_limited(runtime):
    moderation = _moderation(runtime, hide_threshold=0, report_rate_limit=2)
    items = [_upload(runtime, "property:P1:gallery", "OWNER", verified=True) for _ in range(3)]
    for sub in ("U1", "U2", "U3", "U4"):
        moderation.report(items[0].id, Principal(sub), None)
    assert reload(runtime, items[0]).moderation_status == "approved"
    moderation.report(items[1].id, Principal("U1"), None)  # U1's second report this hour
    moderation.report(items[1].id, Principal("U1"), None)  # a repeat: no new report, not counted
    with pytest.raises(MediaHubError) as caught:
        moderation.report(items[2].id, Principal("U1"), None)
    assert caught.value.code == "rate_limited" and 1 <= caught.value.details["retry_after"] <= 3600
    moderation.report(items[2].id, Principal("U2"), None)  # another reporter is not limited by U1


def test_a_reporter_must_see_the_item(runtime):
    moderation = _moderation(runtime)
    pending = _upload(runtime, "property:P1:gallery", "OWNER")
    with pytest.raises(MediaHubError) as caught:
        moderation.report(pending.id, Principal("STRANGER"), None)
    assert caught.value.code == "media_not_found"
    assert moderation.queue(MODERATOR, 0, 10)[0][0].open_reports == 0


def test_two_approvals_in_one_slot_at_once_leave_one_item(runtime):
    """Two moderators approve two candidates of one slot together: one wins, the other item is gone (404)."""
    moderation = _moderation(runtime)
    old = _upload(runtime, "builder:B1:logo", "ALICE", verified=True)
    candidates = [_upload(runtime, "builder:B1:logo", sub, path=path)
                  for sub, path in (("BOB", PHOTO), ("CAROL", OTHER_PHOTO))]
    barrier = threading.Barrier(len(candidates), timeout=30)

    def approve(item) -> str:
        barrier.wait()
        try:
            moderation.decide(item.id, MODERATOR, "approved", None)
        except MediaHubError as exc:
            return exc.code
        return "approved"

    with ThreadPoolExecutor(len(candidates)) as pool:
        outcomes = list(pool.map(approve, candidates))
    assert sorted(outcomes) == ["approved", "media_not_found"]
    [winner] = [item for item, outcome in zip(candidates, outcomes) if outcome == "approved"]
    assert _public(runtime, "builder:B1", "logo") == [(winner.id, True)]
    assert reload(runtime, old) is None and stored_keys(runtime) == set(winner.keys())


def test_an_item_hidden_by_reports_keeps_its_place_until_a_moderator_decides(runtime):
    """Flagged is approved-and-held: a pending upload neither takes its primary nor replaces its slot."""
    moderation = _moderation(runtime, hide_threshold=1)
    cover = _upload(runtime, "builder:B1:portfolio", "B1", verified=True, is_primary=True)
    logo = _upload(runtime, "builder:B1:logo", "B1", verified=True)
    for item in (cover, logo):
        moderation.report(item.id, Principal("R1"), "spam")
        assert reload(runtime, item).moderation_status == "flagged"

    pending_cover = _upload(runtime, "builder:B1:portfolio", "B1", is_primary=True, path=OTHER_PHOTO)
    pending_logo = _upload(runtime, "builder:B1:logo", "B1", path=OTHER_PHOTO)
    assert not pending_cover.is_primary and pending_cover.claims_primary
    assert reload(runtime, logo) is not None, "the uploader's new try does not delete their held logo"

    moderation.dismiss(cover.id, MODERATOR)
    moderation.dismiss(logo.id, MODERATOR)
    moderation.decide(pending_logo.id, MODERATOR, "rejected", None)
    assert _public(runtime, "builder:B1", "portfolio") == [(cover.id, True)]
    assert _public(runtime, "builder:B1", "logo") == [(logo.id, True)]
