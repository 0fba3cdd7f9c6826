"""MODERATION_CHECKS over HTTP: every upload waits for the `moderation_check` job, which approves what would have
started approved when every check passes and flags what any check flags (or could not judge).

The hook is a real HTTP server on loopback (tests/support/moderation_hook.py); the NSFW check runs the bundled
open_nsfw model. The high score comes from the classic "peppers" test picture, safe by any standard, which
open_nsfw scores about 0.74 (a known false positive of skin-like colours): it shows the flag path of the real
model without an explicit image.
"""

from __future__ import annotations

import base64
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from sqlalchemy import select

from mediahub.config import Settings
from mediahub.db.models import AuditEvent, MediaItem
from mediahub.media.checks import ModerationChecks, Original
from mediahub.pipeline.nsfw import MODEL_TAMPERED, bundled_model
from tests.api.conftest import HOPPER, AppFactory, Tokens, add_member, assert_problem, free_port, upload
from tests.support.corpus import CORPUS_DIR
from tests.support.moderation_hook import FakeHook, fake_hook  # noqa: F401  (a fixture)

PHOTOS = "/v1/media/properties/123/photos"
ROOMS = CORPUS_DIR.parent / "rooms"
KITCHEN = ROOMS / "kitchen/houses_h005_kitchen.jpg"
PEPPERS = CORPUS_DIR / "images/good/png_peppers_crop.png"  # open_nsfw's false positive: see the docstring
JOBS_TIMEOUT = 60.0  # a bound on a wait for the app's own runner, not a measurement


def _verified() -> dict[str, str]:
    return Tokens().header("USR-1", verified=True)


def _client(app_factory: AppFactory, **settings: Any) -> TestClient:
    return TestClient(app_factory(job_backoff_seconds=0, **settings))


@pytest.fixture
def hooked(app_factory: AppFactory, fake_hook: FakeHook, tokens: Tokens) -> Iterator[TestClient]:
    """The hook check alone, with a short timeout; USR-1 owns property 123."""
    with _client(app_factory, moderation_checks="hook", moderation_hook_url=fake_hook.url,
                 moderation_hook_timeout_seconds=1) as client:
        add_member(client, tokens, "property:123", "USR-1")
        yield client


def _settled(client: TestClient, item: dict[str, Any]) -> dict[str, Any]:
    """The item as a moderator sees it once its jobs are done, with its checks' state from the queue or row."""
    runtime = client.app.state.runtime
    assert runtime.wait_for_jobs([item["id"]], JOBS_TIMEOUT)
    with runtime.database.session() as session:
        row = session.get(MediaItem, item["id"])
        return {"status": row.moderation_status, "reason": row.moderation_reason, "checks": row.meta.get("checks")}


def _stored(response: Any) -> dict[str, Any]:
    assert response.status_code == 201, response.text
    return response.json()


def _events(client: TestClient, media_id: int) -> list[tuple[str, str]]:
    with client.app.state.runtime.database.session() as session:
        return [(e.action, e.actor) for e in session.scalars(
            select(AuditEvent).where(AuditEvent.media_id == media_id).order_by(AuditEvent.id))]


# Settings


@pytest.mark.parametrize("values, message", [
    ({"moderation_checks": "nsfw,virus"}, "moderation_checks"),
    ({"moderation_checks": "hook"}, "MODERATION_HOOK_URL"),
])
def test_bad_check_settings_stop_the_start(values: dict[str, str], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Settings(_env_file=None, **values)


# The hook


def test_a_2xx_approves_what_would_have_started_approved_as_the_system(hooked: TestClient,
                                                                       fake_hook: FakeHook) -> None:
    item = _stored(upload(hooked, PHOTOS, _verified()))
    assert item["moderation_status"] == "pending" and "checks" not in item["metadata"]

    settled = _settled(hooked, item)

    assert settled["status"] == "approved" and settled["reason"] is None
    assert settled["checks"]["awaiting"] is False
    assert settled["checks"]["results"] == [{"check": "hook", "verdict": "pass", "code": "hook_accepted",
                                             "detail": "the hook answered 200", "score": None}]
    (call,) = fake_hook.calls
    stored = hooked.app.state.runtime.storage.get(_row(hooked, item["id"]).original_key)
    assert call.body == stored and call.content_type == "image/jpeg" and call.content_length == str(len(stored))
    assert ("media.approve", "system") in _events(hooked, item["id"])


def test_a_pass_leaves_an_upload_a_moderator_must_see_pending(hooked: TestClient, fake_hook: FakeHook) -> None:
    item = _stored(upload(hooked, PHOTOS, Tokens().header("USR-1")))  # not verified: a moderator decides

    settled = _settled(hooked, item)

    assert settled["status"] == "pending" and settled["checks"]["results"][0]["verdict"] == "pass"
    assert [action for action, _ in _events(hooked, item["id"])] == ["media.create"]


@pytest.mark.parametrize("setup, code, detail", [
    ({"status": 403}, "hook_rejected", "the hook answered 403"),
    ({"status": 500}, "hook_rejected", "the hook answered 500"),
    ({"status": 302, "location": "/elsewhere"}, "hook_redirect", "302"),
    ({"delay": 3}, "hook_timeout", "no answer within 1 s"),
])
def test_anything_but_a_2xx_flags_the_upload_with_its_own_code(hooked: TestClient, fake_hook: FakeHook,
                                                                tokens: Tokens, setup: dict[str, Any], code: str,
                                                                detail: str) -> None:
    for name, value in setup.items():
        setattr(fake_hook, name, value)
    item = _stored(upload(hooked, PHOTOS, _verified()))

    settled = _settled(hooked, item)

    assert settled["status"] == "flagged" and code in settled["reason"]
    (result,) = settled["checks"]["results"]
    assert (result["verdict"], result["code"]) == ("flag", code) and detail in result["detail"]
    assert len(fake_hook.calls) == 1  # a redirect is never followed
    assert ("media.flag", "system") in _events(hooked, item["id"])
    queued = hooked.get("/v1/media/moderation/queue", headers=tokens.moderator()).json()["items"]
    entry = next(entry for entry in queued if entry["id"] == item["id"])
    assert entry["checks"]["results"][0]["code"] == code and entry["checks"]["risk"] == 1.0


def test_an_unreachable_hook_flags_the_upload(app_factory: AppFactory, tokens: Tokens) -> None:
    closed = f"http://127.0.0.1:{free_port()}/validate"
    with _client(app_factory, moderation_checks="hook", moderation_hook_url=closed) as client:
        add_member(client, tokens, "property:123", "USR-1")
        settled = _settled(client, _stored(upload(client, PHOTOS, _verified())))
    assert settled["status"] == "flagged" and settled["checks"]["results"][0]["code"] == "hook_refused"


def test_a_hook_over_tls_it_cannot_verify_flags_the_upload(app_factory: AppFactory, tokens: Tokens,
                                                           fake_hook: FakeHook) -> None:
    """The loopback server speaks plain HTTP: a TLS client's handshake with it fails."""
    with _client(app_factory, moderation_checks="hook",
                 moderation_hook_url=fake_hook.url.replace("http://", "https://")) as client:
        add_member(client, tokens, "property:123", "USR-1")
        settled = _settled(client, _stored(upload(client, PHOTOS, _verified())))
    assert settled["status"] == "flagged" and settled["checks"]["results"][0]["code"] == "hook_tls"


def test_a_huge_answer_is_not_read(hooked: TestClient, fake_hook: FakeHook) -> None:
    fake_hook.status, fake_hook.body_bytes = 403, 1024 * 1024 * 1024

    settled = _settled(hooked, _stored(upload(hooked, PHOTOS, _verified())))

    assert settled["status"] == "flagged" and settled["checks"]["results"][0]["detail"].startswith(
        "the hook answered 403: xxxx")
    assert fake_hook.body_sent < 64 * 1024 * 1024  # the client hung up after the start of it


# Human decisions, deletes, re-runs


def test_a_moderators_decision_before_the_checks_finish_wins(app_factory: AppFactory, fake_hook: FakeHook,
                                                             tokens: Tokens, migrated_database_url: str) -> None:
    import threading

    fake_hook.hold = threading.Event()
    with _client(app_factory, moderation_checks="hook", moderation_hook_url=fake_hook.url,
                 moderation_hook_timeout_seconds=30, database_url=migrated_database_url) as client:
        add_member(client, tokens, "property:123", "USR-1")
        item = _stored(upload(client, PHOTOS, _verified()))
        _wait_for_call(fake_hook)
        decided = client.post(f"/v1/media/{item['id']}/moderation", headers=tokens.moderator(),
                              json={"status": "rejected", "reason": "not this room"})
        assert decided.status_code == 200, decided.text
        fake_hook.hold.set()  # the hook accepts it now

        settled = _settled(client, item)

        assert (settled["status"], settled["reason"]) == ("rejected", "not this room")
        assert settled["checks"]["results"][0]["code"] == "hook_accepted"  # recorded all the same
        assert ("media.approve", "system") not in _events(client, item["id"])


def _wait_for_call(hook: FakeHook) -> None:
    import time

    deadline = time.monotonic() + JOBS_TIMEOUT
    while not hook.calls:
        assert time.monotonic() < deadline, "the hook was never called"
        time.sleep(0.02)


def test_a_rerun_and_a_deleted_item_change_nothing(hooked: TestClient, fake_hook: FakeHook) -> None:
    runtime = hooked.app.state.runtime
    item = _stored(upload(hooked, PHOTOS, _verified()))
    settled = _settled(hooked, item)
    events = _events(hooked, item["id"])

    for media_id in (item["id"], 10**9):  # decided already; never existed (as a deleted item)
        assert runtime.checks.run(runtime.database, runtime.storage, runtime.cdn, media_id, 10**9, None) == []

    assert _settled(hooked, item) == settled and _events(hooked, item["id"]) == events
    assert len(fake_hook.calls) == 1


def _row(client: TestClient, media_id: int) -> MediaItem:
    with client.app.state.runtime.database.session() as session:
        return session.get(MediaItem, media_id)


# Every ingest path


def test_every_ingest_path_waits_for_the_checks(hooked: TestClient, fake_hook: FakeHook, tokens: Tokens) -> None:
    fake_hook.status = 403
    headers = _verified()
    single = _stored(upload(hooked, PHOTOS, headers))
    batch = hooked.post("/v1/media/batch/upload", headers=headers,
                        files=[("files", ("a.jpg", HOPPER.read_bytes(), "image/jpeg"))],
                        data={"entity_type": "property", "entity_id": "123", "entity_field": "photos"})
    assert batch.status_code == 201, batch.text
    data = HOPPER.read_bytes()
    meta = ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in
                    {"entity_type": "property", "entity_id": "123", "entity_field": "photos"}.items())
    created = hooked.post("/v1/media/tus/", content=data, headers={
        **headers, "Tus-Resumable": "1.0.0", "Upload-Length": str(len(data)), "Upload-Metadata": meta,
        "Content-Type": "application/offset+octet-stream"})
    assert created.status_code == 201, created.text  # the upload complete as created: ingested
    with hooked.app.state.runtime.database.session() as session:
        ids = list(session.scalars(select(MediaItem.id)))
    assert len(ids) == 3 and {single["id"], batch.json()["results"][0]["item"]["id"]} < set(ids)

    for media_id in ids:
        settled = _settled(hooked, {"id": media_id})
        assert settled["status"] == "flagged" and settled["checks"]["results"][0]["code"] == "hook_rejected"
    assert len(fake_hook.calls) == 3


# The NSFW model


@pytest.fixture
def nsfw(app_factory: AppFactory, tokens: Tokens) -> Iterator[TestClient]:
    with _client(app_factory, moderation_checks="nsfw") as client:
        add_member(client, tokens, "property:123", "USR-1")
        yield client


def test_listing_photos_pass_and_the_peppers_are_flagged_by_their_score(nsfw: TestClient, tokens: Tokens) -> None:
    kitchen = _settled(nsfw, _stored(upload(nsfw, PHOTOS, _verified(), file=KITCHEN)))
    peppers = _settled(nsfw, _stored(upload(nsfw, PHOTOS, _verified(), file=PEPPERS)))

    (safe,) = kitchen["checks"]["results"]
    (high,) = peppers["checks"]["results"]
    assert kitchen["status"] == "approved" and safe["verdict"] == "pass" and safe["score"] < 0.2
    assert peppers["status"] == "flagged" and high["verdict"] == "flag" and high["score"] >= 0.5
    assert "nsfw nsfw_score" in peppers["reason"] and peppers["checks"]["risk"] == high["score"]


def test_safe_listing_photos_score_low_and_scores_vary() -> None:
    checks = ModerationChecks.from_settings(Settings(_env_file=None, moderation_checks="nsfw"))
    photos = sorted(ROOMS.glob("*/*.jpg"))[::6]
    scores = [checks.judge(Original(path, "image/jpeg", path.stat().st_size, "image", "jpeg"))[0].score
              for path in photos]
    assert len(photos) >= 10 and max(scores) < 0.5 and len(set(scores)) > len(scores) // 2


def test_a_video_is_not_approved_by_a_model_that_scores_still_images(tmp_path: Path) -> None:
    checks = ModerationChecks.from_settings(Settings(_env_file=None, moderation_checks="nsfw"))
    (result,) = checks.judge(Original(HOPPER, "video/mp4", 1, "video", "mp4"))
    assert (result.verdict, result.code) == ("flag", "nsfw_unscored_video")


def test_an_altered_model_is_refused_and_approves_nothing(app_factory: AppFactory, tokens: Tokens,
                                                          tmp_path: Path) -> None:
    altered = tmp_path / "open-nsfw.onnx"
    shutil.copyfile(bundled_model(), altered)
    _flip_a_byte(altered)
    with _client(app_factory, moderation_checks="nsfw", nsfw_model_file=altered) as client:
        add_member(client, tokens, "property:123", "USR-1")
        body = assert_problem(client.get("/readyz"), 503, MODEL_TAMPERED)
        assert body["checks"]["moderation_checks"] == MODEL_TAMPERED
        assert body["features"] == {"moderation_checks": MODEL_TAMPERED, "tagging": "off"}

        settled = _settled(client, _stored(upload(client, PHOTOS, _verified(), file=KITCHEN)))

    assert settled["status"] == "flagged" and settled["checks"]["results"][0]["code"] == MODEL_TAMPERED


def test_readiness_reports_the_checks_as_a_feature(app_factory: AppFactory, fake_hook: FakeHook) -> None:
    with _client(app_factory) as client:
        assert client.get("/readyz").json() == {"status": "ready", "features": {"moderation_checks": "off", "tagging": "off"}}
    with _client(app_factory, moderation_checks="nsfw,hook", moderation_hook_url=fake_hook.url) as client:
        assert client.get("/readyz").json() == {"status": "ready", "features": {"moderation_checks": "ok", "tagging": "off"}}


def test_the_queue_sorts_by_the_checks_risk_on_every_database(app_factory: AppFactory, tokens: Tokens,
                                                              migrated_database_url: str) -> None:
    with _client(app_factory, moderation_checks="nsfw", database_url=migrated_database_url) as client:
        add_member(client, tokens, "property:123", "USR-1")
        admins = _stored(upload(client, PHOTOS, tokens.admin(), file=HOPPER))  # passes: approved, out of the queue
        kitchen = _stored(upload(client, PHOTOS, Tokens().header("USR-1"), file=KITCHEN))
        peppers = _stored(upload(client, PHOTOS, Tokens().header("USR-1"), file=PEPPERS))
        for item in (admins, kitchen, peppers):
            _settled(client, item)

        oldest = client.get("/v1/media/moderation/queue", headers=tokens.moderator()).json()
        risky = client.get("/v1/media/moderation/queue", params={"order": "risk", "limit": 1},
                           headers=tokens.moderator()).json()

    assert [entry["id"] for entry in oldest["items"]] == [kitchen["id"], peppers["id"]]
    assert [entry["id"] for entry in risky["items"]] == [peppers["id"]] and risky["total"] == 2
    assert risky["items"][0]["checks"]["risk"] >= 0.5


# What an attacker can do with the checks


def test_a_hook_that_drips_its_answer_is_cut_at_the_deadline(app_factory: AppFactory, fake_hook: FakeHook,
                                                             tokens: Tokens) -> None:
    """Each byte arrives within the per-read timeout; only a deadline on the whole call ends it, so a slow
    scanner cannot hold the job threads (and, after each lease runs out, the next ones) for ever."""
    fake_hook.drip = 0.2
    with _client(app_factory, moderation_checks="hook", moderation_hook_url=fake_hook.url,
                 moderation_hook_timeout_seconds=1, moderation_hook_deadline_seconds=2) as client:
        add_member(client, tokens, "property:123", "USR-1")
        settled = _settled(client, _stored(upload(client, PHOTOS, _verified())))

    assert settled["status"] == "flagged"
    (result,) = settled["checks"]["results"]
    assert result["code"] == "hook_timeout" and "2 s" in result["detail"]


def test_the_uploader_never_sees_a_score_or_the_hooks_answer(nsfw: TestClient, tokens: Tokens) -> None:
    """A score (or the scanner's words) in what the uploader can read would let them probe the threshold."""
    uploader = _verified()
    item = _stored(upload(nsfw, PHOTOS, uploader, file=PEPPERS))
    settled = _settled(nsfw, item)
    (result,) = settled["checks"]["results"]
    assert settled["status"] == "flagged" and result["score"] >= 0.5

    seen = nsfw.get(f"/v1/media/{item['id']}", headers=uploader)
    history = nsfw.get(f"/v1/media/{item['id']}/history", headers=uploader)
    assert seen.status_code == 200 and history.status_code == 200, (seen.text, history.text)
    assert seen.json()["moderation_status"] == "flagged" and "nsfw" in seen.json()["moderation_reason"]
    for answer in (seen.text, history.text):
        assert f"{result['score']:.3f}" not in answer and str(result["score"]) not in answer
        assert "flags from" not in answer and "scored" not in answer


def test_the_uploader_never_sees_what_the_hook_answered(hooked: TestClient, fake_hook: FakeHook) -> None:
    fake_hook.status, fake_hook.body_bytes = 403, 100  # "xxx…": the scanner's own words
    uploader = _verified()
    item = _stored(upload(hooked, PHOTOS, uploader))
    assert _settled(hooked, item)["status"] == "flagged"

    seen = hooked.get(f"/v1/media/{item['id']}", headers=uploader).json()
    history = hooked.get(f"/v1/media/{item['id']}/history", headers=uploader).text
    assert "hook_rejected" in seen["moderation_reason"]
    assert "xxxx" not in seen["moderation_reason"] and "xxxx" not in history and "403" not in history


def test_a_process_without_the_checks_approves_nothing_that_awaits_them(app_factory: AppFactory,
                                                                        fake_hook: FakeHook,
                                                                        tokens: Tokens) -> None:
    """A worker deployed without MODERATION_CHECKS (while the API has them) must not approve unjudged uploads."""
    import threading

    fake_hook.hold = threading.Event()
    with _client(app_factory, moderation_checks="hook", moderation_hook_url=fake_hook.url,
                 moderation_hook_timeout_seconds=30) as client:
        add_member(client, tokens, "property:123", "USR-1")
        runtime = client.app.state.runtime
        item = _stored(upload(client, PHOTOS, _verified()))
        _wait_for_call(fake_hook)  # this process's job holds on the hook; another process's runs meanwhile

        ModerationChecks([]).run(runtime.database, runtime.storage, runtime.cdn, item["id"], 10**9, None)
        fake_hook.hold.set()
        settled = _settled(client, item)

    assert settled["status"] == "flagged" and "checks_not_configured" in settled["reason"]
    assert ("media.approve", "system") not in _events(client, item["id"])


def test_a_model_altered_after_the_readiness_check_is_not_loaded(tmp_path: Path) -> None:
    """Readiness verifies the file long before the first judgement loads it: the load checks it again."""
    model = tmp_path / "open-nsfw.onnx"
    shutil.copyfile(bundled_model(), model)
    checks = ModerationChecks.from_settings(Settings(_env_file=None, moderation_checks="nsfw",
                                                     nsfw_model_file=model))
    assert checks.status() == "ok"
    _flip_a_byte(model)

    (result,) = checks.judge(Original(KITCHEN, "image/jpeg", KITCHEN.stat().st_size, "image", "jpeg"))

    assert (result.verdict, result.code) == ("flag", MODEL_TAMPERED)
    assert checks.status() == MODEL_TAMPERED


def _flip_a_byte(path: Path) -> None:
    with path.open("r+b") as fh:
        fh.seek(1000)
        byte = fh.read(1)
        fh.seek(1000)
        fh.write(bytes([byte[0] ^ 1]))
