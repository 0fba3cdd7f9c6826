"""Delivery under attack and under races: findings of a black-box review of the delivery path.

Each test names what an outsider (or a job running beside a request) can do today and what the
service should do instead. Faults are injected through public seams: a store wrapper handed to
`Delivery`, or to the runtime (tests/support/faults.py), and the variant publisher jobs use.
"""

from __future__ import annotations

import io
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import event, text

from mediahub.db.repositories import MediaRepository, VariantRow
from mediahub.db.repositories.render_claims import RenderClaimRepository
from mediahub.db.session import Database
from mediahub.errors import DatabaseUnavailable
from mediahub.media.cleanup import purge_pending_deletes
from mediahub.media.delivery import Delivery
from mediahub.media.keys import variant_key
from mediahub.media.renditions import publish
from tests.api.conftest import AppFactory, Tokens, assert_problem, upload
from tests.support.audit_guard import unaudited
from tests.support.concurrency import run_together
from tests.support.corpus import CORPUS_DIR
from tests.support.faults import Passthrough

LANDSCAPE_6 = CORPUS_DIR / "images/good/orient_landscape_6.jpg"  # 1800x1200 upright
SIZES = "thumbnail:150x150:crop,small:400,large:1600"


@pytest.fixture
def client(app_factory: AppFactory) -> TestClient:
    # No WebP jobs: the tests below decide when a rendition appears. Server errors answer 500, as in production.
    with TestClient(app_factory(image_sizes=SIZES, make_webp=False), raise_server_exceptions=False) as client:
        yield client


def _approved(client: TestClient, tokens: Tokens, sub: str = "USR-2") -> dict:
    response = upload(client, f"/v1/media/users/{sub}/avatar", tokens.header(sub, verified=True), file=LANDSCAPE_6)
    assert response.status_code == 201, response.text
    assert response.json()["moderation_status"] == "approved"
    return response.json()


def _signed_path(client: TestClient, item: dict, **options: Any) -> str:
    response = client.post(f"/v1/media/{item['id']}/transform-url", json=options, headers=Tokens().user())
    assert response.status_code == 200, response.text
    parts = urlsplit(response.json()["url"])
    return parts.path + (f"?{parts.query}" if parts.query else "")


def _stored(tmp_path: Path, pattern: str) -> set[Path]:
    return set((tmp_path / "media").rglob(pattern))


def _publish_small_webp(runtime: Any, item_id: int) -> str:
    """What the renditions job does for `small` in WebP: its object first, then its row in place of any other."""
    with runtime.database.session() as session:
        item = MediaRepository(session).get(item_id)
        key, stored_in = variant_key(item.original_key, "small-job", "webp"), item.store
    picture = io.BytesIO()
    Image.new("RGB", (1, 1)).save(picture, "WEBP")
    data = picture.getvalue()
    runtime.storage.put(key, data, "image/webp")
    row = VariantRow("small", "webp", key, 1, 1, len(data), "image/webp")
    assert publish(runtime.database, runtime.storage, item_id, [row], cdn=runtime.cdn, stored_in=stored_in,
                   keep=lambda v: (v.name, v.format) != ("small", "webp")) is not None
    return key


# Storage exhaustion: transforms that render the same picture are stored once


def test_equivalent_transforms_share_one_stored_result(client: TestClient, tokens: Tokens, tmp_path: Path) -> None:
    """Anyone may sign (approved items), and every width past the picture's renders the whole picture again:
    one signer makes unbounded identical stored copies (20 requests stored 8.5 MB of one 426 KB JPEG)."""
    item = _approved(client, tokens)
    before = _stored(tmp_path, "*_t-*")
    equivalent = [
        {"width": 1800, "format": "jpeg"},
        {"width": 1801, "format": "jpeg"},  # wider than the picture: never enlarged, the same pixels
        {"width": 16384, "format": "jpeg"},
        {"width": 900, "dpr": 2, "format": "jpeg"},  # the same box
        {"width": 1800, "quality": 85, "format": "jpeg"},  # JPEG's default quality, spelled out
        {"width": 1800, "fit": "inside", "format": "jpeg"},  # fit and gravity mean nothing without a height
        {"width": 1800, "gravity": "center", "format": "jpeg"},
    ]
    bodies = set()
    for options in equivalent:
        response = client.get(_signed_path(client, item, **options))
        assert response.status_code == 200, response.text
        bodies.add(response.content)
    assert len(bodies) == 1
    assert len(_stored(tmp_path, "*_t-*") - before) == 1


def test_signing_a_transform_url_needs_a_token(client: TestClient, tokens: Tokens) -> None:
    """Presets-only is the default for unsigned URLs, but the signer answers anyone: an anonymous caller
    mints any transform of any approved item, which makes UNSIGNED_TRANSFORMS=false moot."""
    item = _approved(client, tokens)
    assert_problem(client.post(f"/v1/media/{item['id']}/transform-url", json={"width": 300}), 401)


def test_the_original_is_not_converted_to_png_for_anyone(client: TestClient, tokens: Tokens,
                                                         tmp_path: Path) -> None:
    """`original.png` of an opaque JPEG stores a lossless copy of the whole picture (a 9 MB 16 MP JPEG gave
    a 43.7 MB PNG, 10 s of CPU and a 1 GB peak), for any anonymous caller, once per item."""
    item = _approved(client, tokens)
    before = _stored(tmp_path, "*.png")
    response = client.get(f"/v1/images/{item['public_id']}/original.png")
    assert_problem(response, 404, "no_such_format")
    assert _stored(tmp_path, "*.png") == before


# Races with the jobs that publish the same renditions


def test_a_rendition_published_by_a_job_meanwhile_is_served_not_a_500(client: TestClient, tokens: Tokens) -> None:
    """An upload's renditions job publishes `small.webp` while a request renders it on demand: the
    request's insert hits uq_variant_name_format (IntegrityError, 500). Seen live on 3 of 3 fresh uploads
    polled for their WebP presets."""
    item = _approved(client, tokens)
    runtime = client.app.state.runtime

    class JobPublishesFirst(Passthrough):
        def put(self, key: str, source: Any, content_type: str) -> Any:
            if "_small-" in key and key.endswith(".webp"):
                _publish_small_webp(runtime, item["id"])
            return self.inner.put(key, source, content_type)

    runtime.delivery = Delivery(runtime.settings, runtime.database, JobPublishesFirst(runtime.storage))
    response = client.get(f"/v1/images/{item['public_id']}/small.webp")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/webp"


def test_a_rendition_replaced_between_lookup_and_send_is_not_a_404(client: TestClient, tokens: Tokens) -> None:
    """The row is found, then a job replaces it and purges its object before the bytes are sent: the
    answer is a 404 object_not_found naming the storage key, with no Cache-Control (a CDN may keep it)."""
    item = _approved(client, tokens)
    runtime = client.app.state.runtime
    assert client.get(f"/v1/images/{item['public_id']}/small.webp").status_code == 200  # made on demand
    replaced: list[str] = []

    class JobReplacesBeforeSend(Passthrough):
        def get(self, key: str) -> Any:
            if "_small-" in key and key.endswith(".webp") and not replaced:
                replaced.append(_publish_small_webp(runtime, item["id"]))
                purge_pending_deletes(runtime.database, self.inner)
            return self.inner.get(key)

    runtime.storage = JobReplacesBeforeSend(runtime.storage)
    response = client.get(f"/v1/images/{item['public_id']}/small.webp")
    assert replaced
    assert response.status_code == 200, response.text


def test_deleting_an_item_while_a_result_is_stored_leaves_no_object(client: TestClient, tokens: Tokens,
                                                                     tmp_path: Path) -> None:
    """ManageService.delete loads the item (and its variants) without the item's lock; a result committed
    between that load and the delete is cascaded away in the database but its object is never queued."""
    item = _approved(client, tokens)
    runtime = client.app.state.runtime
    path = _signed_path(client, item, width=250, format="webp")
    with runtime.database.session() as session:
        unaudited(session, "the repository's delete alone, as the delete route calls it")
        media = MediaRepository(session)
        loaded = media.get(item["id"])  # as the delete route does
        assert client.get(path).status_code == 200  # a render stores its result meanwhile
        media.delete(loaded)
    purge_pending_deletes(runtime.database, runtime.storage)
    assert not _stored(tmp_path, "*_t-*"), "a stored result outlived its item"


def test_an_item_deleted_between_the_lookup_and_the_access_check_is_a_404(app_factory: AppFactory, tokens: Tokens,
                                                                          migrated_database_url: str) -> None:
    """A pending item's image is looked up, then its access is checked on the item read again; a delete
    committed between the two (PostgreSQL and SQLite: each statement sees the latest commit) left that read empty
    and the check failed on None (500). Seen once in the many-processes chaos run."""
    with TestClient(app_factory(database_url=migrated_database_url), raise_server_exceptions=False) as client:
        response = upload(client, "/v1/media/users/USR-9/avatar", tokens.header("USR-9"), file=LANDSCAPE_6)
        assert response.status_code == 201, response.text
        item = response.json()
        assert item["moderation_status"] == "pending"
        database = client.app.state.runtime.database
        deleted: list[int] = []

        def delete_before_the_item_is_read(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
            by_id = statement.lstrip().startswith("SELECT") and "FROM media_items" in statement and (
                "WHERE media_items.id = " in statement)
            if by_id and not deleted:
                deleted.append(item["id"])
                with database.engine.begin() as other:
                    other.execute(text("DELETE FROM media_items WHERE id = :id"), {"id": item["id"]})

        event.listen(database.engine, "before_cursor_execute", delete_before_the_item_is_read)
        try:
            response = client.get(f"/v1/images/{item['public_id']}/small.jpg", headers=tokens.admin())
        finally:
            event.remove(database.engine, "before_cursor_execute", delete_before_the_item_is_read)
        assert deleted == [item["id"]]
        if database.engine.dialect.name in ("mysql", "mariadb"):  # REPEATABLE READ: both reads see one snapshot
            assert response.status_code in (200, 404), response.text
        else:
            assert_problem(response, 404, "image_not_found")


# Availability


def test_a_negotiated_preset_falls_back_to_its_stored_format_when_renders_are_busy(app_factory: AppFactory,
                                                                                  tokens: Tokens) -> None:
    """Anyone can fill the render slots and queue with distinct transform misses (each 16 MP render runs to
    the deadline); meanwhile a browser's negotiated preset URL, whose JPEG is stored, answers 503."""
    settings = {"image_sizes": SIZES, "make_webp": False, "max_concurrent_renders": 1, "render_queue": 0}
    with TestClient(app_factory(**settings)) as client:
        item = _approved(client, tokens)
        with client.app.state.runtime.delivery.gate.slot():  # another render holds the only slot
            response = client.get(f"/v1/images/{item['public_id']}/small",
                                  headers={"Accept": "image/avif,image/webp,*/*"})
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "image/jpeg"
        assert response.headers["vary"] == "Accept"


# Signed URL malleability


@pytest.mark.parametrize("spelling", ["0{e}", "+{e}", "{e}.0", " {e} ", "{head}_{tail}"])
def test_one_signed_url_has_one_spelling(client: TestClient, tokens: Tokens, spelling: str) -> None:
    """`?expires=` is parsed as a lax int, so one signed URL has unboundedly many accepted spellings: each a
    distinct CDN cache key that reaches the origin."""
    item = _approved(client, tokens)
    path = _signed_path(client, item, width=200, format="jpeg", expires_in=3600)
    base, _, expires = path.partition("?expires=")
    assert client.get(path).status_code == 200
    variant = spelling.format(e=expires, head=expires[:3], tail=expires[3:])
    response = client.get(base, params={"expires": variant})
    assert response.status_code in (403, 422), response.status_code


# Render claims across processes


def test_concurrent_claims_of_one_rendition_hold_one_at_a_time(db: Database) -> None:
    """Server processes claiming one rendition at once (a popular URL's first misses): one holds it at a
    time, and on SQLite and PostgreSQL no claim fails. On MariaDB InnoDB picks deadlock victims among
    inserts racing a delete of one key: a claim may fail there with DatabaseUnavailable, which Delivery
    counts as held by another (and nothing else may fail)."""
    errors: list[Exception] = []
    holding: list[str] = []
    overlaps: list[list[str]] = []
    won: list[str] = []
    lock = threading.Lock()

    def claimer(owner: str) -> None:
        for _ in range(300):
            try:
                with db.session() as session:
                    held = RenderClaimRepository(session).claim(1, "t-x", "webp", owner)
                if held:
                    with lock:
                        won.append(owner)
                        holding.append(owner)
                        if len(holding) > 1:
                            overlaps.append(list(holding))
                    with lock:
                        holding.remove(owner)
                    with db.session() as session:
                        RenderClaimRepository(session).release(1, "t-x", "webp", owner)
            except Exception as exc:  # noqa: BLE001 (every failure is the finding)
                errors.append(exc)

    run_together([lambda owner=f"host:{n}": claimer(owner) for n in range(4)])
    assert overlaps == []
    assert len(set(won)) > 1, "claims are won, by more than one claimer in turn"
    if db.url.get_backend_name().startswith(("mysql", "mariadb")):
        assert all(isinstance(e, DatabaseUnavailable) for e in errors), errors[:3]
    else:
        assert errors == []


# Thread exhaustion


def test_requests_waiting_for_one_render_leave_the_server_answering(app_factory: AppFactory, tokens: Tokens) -> None:
    """Requests for one rendition being made wait for it on a threadpool thread each, unbounded by the
    render queue: 60 anonymous requests for one uncached `original` (Accept: image/avif) stalled every
    cached image and every sync route for the render's 10-20 s, live. Here 45 wait (the pool has 40)."""
    waiting = 45
    # A long deadline: the waiters outwait the probe below, as they outwait a request in production.
    with TestClient(app_factory(image_sizes=SIZES, make_webp=False, render_deadline_seconds=600)) as client:
        item = _approved(client, tokens)
        runtime = client.app.state.runtime
        release = threading.Event()
        sessions = [0]
        pool_full = threading.Event()

        class HeldOriginal(Passthrough):
            """The render reads the original, and waits for the test to let it."""

            def get(self, key: str) -> Any:
                release.wait()
                return self.inner.get(key)

        class CountedSessions(Passthrough):
            """Each request opens two sessions before it waits (the item, then the rendition): 82 sessions
            mean the leader and 40 waiters, the whole pool."""

            def session(self) -> Any:
                sessions[0] += 1
                if sessions[0] >= 82:
                    pool_full.set()
                return self.inner.session()

        runtime.delivery = Delivery(runtime.settings, CountedSessions(runtime.database), HeldOriginal(runtime.storage))
        url = f"/v1/images/{item['public_id']}/large.avif"
        answers: list[int] = []
        requests = [threading.Thread(target=lambda: answers.append(client.get(url).status_code))
                    for _ in range(waiting)]
        probe_done = threading.Event()
        probe = threading.Thread(target=lambda: (client.get(f"/v1/media/{item['id']}"), probe_done.set()))
        try:
            for thread in requests:
                thread.start()
            assert pool_full.wait(120), "the requests did not reach the render"
            probe.start()
            answered = probe_done.wait(30)
        finally:
            release.set()
            for thread in [*requests, probe]:
                if thread.ident is not None:
                    thread.join(120)
        assert answered, "an unrelated request waited for a render it does not need"
        assert set(answers) <= {200, 503}
