"""Many processes on real engines: API processes and `mediahub worker`s over one PostgreSQL database, one
bucket on moto's S3 and one queue broker, mixed traffic across them, and what must hold afterwards.

Used by tests/reliability/test_many_processes.py; `python -m bench.reliability` prints what it recorded
(MANY_PROCESSES). Every wait is bounded; everything talks to 127.0.0.1.
"""

from __future__ import annotations

import random
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from sqlalchemy import func, select

from mediahub.db import migrate
from mediahub.db.models import Job, MediaItem, MediaVariant, RenderClaim
from mediahub.db.session import Database
from mediahub.media.transform_urls import FORMAT_EXTENSIONS
from tests.reliability.harness import ChildProcess, ServerProcess, WorkerProcess, admin, bearer, wait_until
from tests.support.corpus import CORPUS_DIR

PHOTOS = [CORPUS_DIR / "images/good" / name for name in ("jpeg_flower.jpg", "png_hopper.png", "jpeg_hopper.jpg")]
LARGE_PHOTO = CORPUS_DIR / "images/good/orient_landscape_6.jpg"  # 1800 x 1200: a render takes a while
METRICS_TOKEN = "many-processes-metrics-token"
REQUEST_TIMEOUT = 60.0
# Answers that are right under concurrent traffic: a deleted item (404), an item still being made (503 not_ready).
EXPECTED_BUSY = {"not_ready", "render_busy"}

# Per broker: what the scenario measured, for the table of `python -m bench.reliability`.
MANY_PROCESSES: dict[str, dict[str, Any]] = {}


# ---------------------------------------------------------------------------------------------
# The processes.

@dataclass
class Cluster:
    env: dict[str, str]
    apis: list[ServerProcess]
    workers: list[WorkerProcess]

    @property
    def database_url(self) -> str:
        return self.env["DATABASE_URL"]

    def living_apis(self) -> list[ServerProcess]:
        return [api for api in self.apis if api.alive()]


@contextmanager
def cluster(env: dict[str, str], workdir: Path, apis: int = 2, workers: int = 2) -> Iterator[Cluster]:
    """Migrate, then start the API processes and workers side by side; stop the living ones afterwards."""
    migrate.upgrade(env["DATABASE_URL"])
    started = Cluster(env, [ServerProcess(env, workdir / f"api{n}") for n in range(apis)],
                      [WorkerProcess(env, workdir, name=f"worker{n}") for n in range(workers)])
    for api in started.apis:
        api.workdir.mkdir(parents=True, exist_ok=True)
    try:
        with ThreadPoolExecutor(apis + workers) as pool:
            for future in [pool.submit(p.start) for p in (*started.apis, *started.workers)]:
                future.result()
        yield started
    finally:
        for worker in started.workers:
            if worker.alive():
                worker.terminate(timeout=30)
        for api in started.apis:
            api.stop()


def tracebacks(processes: list[ChildProcess], most: int = 3) -> list[str]:
    """The last `most` tracebacks each process logged, so a failed run says where a 500 came from."""
    found: list[str] = []
    for process in processes:
        parts = process.log().split("Traceback (most recent call last):")[1:]
        found.extend(f"{process.log_path}: Traceback (most recent call last):{part[:3000]}" for part in parts[-most:])
    return found


# ---------------------------------------------------------------------------------------------
# Mixed traffic.

@dataclass
class Upload:
    entity: str
    media_id: int
    public_id: str


@dataclass
class Traffic:
    """Mixed requests from client threads to whichever API processes `targets` holds at each request.

    Each upload goes to an entity of its own, by a principal of its own (so the upload rate limit, set low
    for the scenario, never refuses traffic): an entity names the upload that wrote its objects.
    """

    prefix: str
    targets: list[ServerProcess]
    seed: int = 18
    uploads: dict[int, Upload] = field(default_factory=dict)  # acknowledged (201), by media id
    deleted: set[int] = field(default_factory=set)  # answered 204 (or ok in a batch)
    unsure: set[int] = field(default_factory=set)  # a delete cut by a kill: it may or may not have happened
    cut_entities: set[str] = field(default_factory=set)  # entities of requests cut by a kill
    cuts_on_survivors: int = 0  # requests cut by a process that was not killed: must stay 0
    answers: Counter[str] = field(default_factory=Counter)  # "operation status" -> count
    unexpected: list[str] = field(default_factory=list)
    _next: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self, seconds: float, clients: int) -> int:
        """Send requests from `clients` threads for `seconds`; how many were answered."""
        before = sum(self.answers.values())
        stop = time.monotonic() + seconds
        with ThreadPoolExecutor(clients) as pool:
            for future in [pool.submit(self._client, stop, self.seed + n) for n in range(clients)]:
                future.result()
        self.seed += clients
        return sum(self.answers.values()) - before

    def _client(self, stop: float, seed: int) -> None:
        rng = random.Random(seed)
        operations: list[tuple[Callable[[random.Random], None], int]] = [
            (self._upload, 40), (self._read, 30), (self._moderate, 10), (self._delete, 8), (self._batch, 12)]
        while time.monotonic() < stop:
            operation = rng.choices([op for op, _ in operations], [w for _, w in operations])[0]
            operation(rng)

    # Operations
    def _upload(self, rng: random.Random) -> None:
        with self._lock:
            self._next += 1
            number = self._next
        entity = f"{self.prefix}{number}"
        photo = rng.choice(PHOTOS)
        auth = bearer(f"{self.prefix}-user-{number}", verified=rng.random() < 0.7, grants=(f"property:{entity}",))
        response = self._send(rng, "upload", [entity], "POST", f"/v1/media/properties/{entity}/photos",
                              headers=auth, files={"file": (photo.name, photo.read_bytes())})
        if response is not None and response.status_code == 201:
            body = response.json()
            with self._lock:
                self.uploads[body["id"]] = Upload(entity, body["id"], body["public_id"])

    def _read(self, rng: random.Random) -> None:
        upload = self._pick(rng)
        if upload is None:
            return
        if rng.random() < 0.5:
            self._send(rng, "read item", [upload.entity], "GET", f"/v1/media/{upload.media_id}", headers=admin())
        else:
            name = rng.choice(["original", "thumbnail.jpg", "small.jpg"])
            self._send(rng, "read image", [upload.entity], "GET", f"/v1/images/{upload.public_id}/{name}",
                       headers=admin())

    def _moderate(self, rng: random.Random) -> None:
        upload = self._pick(rng)
        if upload is None:
            return
        decision = {"status": "approved"} if rng.random() < 0.7 else {"status": "rejected", "reason": "test"}
        self._send(rng, "moderate", [upload.entity], "POST", f"/v1/media/{upload.media_id}/moderation",
                   headers=admin(), json=decision)

    def _delete(self, rng: random.Random) -> None:
        upload = self._pick(rng)
        if upload is None:
            return
        response = self._send(rng, "delete", [upload.entity], "DELETE", f"/v1/media/{upload.media_id}",
                              headers=admin(), deleting=[upload.media_id])
        if response is not None and response.status_code == 204:
            with self._lock:
                self.deleted.add(upload.media_id)

    def _batch(self, rng: random.Random) -> None:
        picked = [u for u in (self._pick(rng) for _ in range(3)) if u is not None]
        if not picked:
            return
        ids = sorted({u.media_id for u in picked})
        action = rng.choice(["approve", "tag", "tag", "delete"])
        body: dict[str, Any] = {"action": action, "ids": ids}
        if action == "tag":
            body["tags"] = ["busy"]
        response = self._send(rng, f"batch {action}", [u.entity for u in picked], "POST", "/v1/media/batch",
                              headers=admin(), json=body, deleting=ids if action == "delete" else [])
        if response is not None and response.status_code == 200 and action == "delete":
            with self._lock:
                self.deleted.update(r["id"] for r in response.json()["results"] if r["ok"])

    # Parts
    def _pick(self, rng: random.Random) -> Upload | None:
        with self._lock:
            living = [u for u in self.uploads.values() if u.media_id not in self.deleted]
        return rng.choice(living) if living else None

    def _send(self, rng: random.Random, operation: str, entities: list[str], method: str, path: str,
              deleting: list[int] = (), **kwargs: Any) -> requests.Response | None:
        targets = list(self.targets)
        target = rng.choice(targets)
        try:
            response = requests.request(method, f"{target.url}{path}", timeout=REQUEST_TIMEOUT, **kwargs)
        except requests.RequestException:
            with self._lock:
                self.answers[f"{operation} cut"] += 1
                self.cut_entities.update(entities)
                self.unsure.update(deleting)
                if target in self.targets:  # a process is taken out of `targets` before it is killed
                    self.cuts_on_survivors += 1
            return None
        with self._lock:
            self.answers[f"{operation} {response.status_code}"] += 1
            if not _expected(response):
                self.unexpected.append(f"{method} {path}: {response.status_code} {response.text[:300]}")
        return response


def _expected(response: requests.Response) -> bool:
    if response.status_code < 500 and response.status_code not in (400, 401, 403, 429):
        return True
    if response.status_code != 503:
        return False
    try:
        return response.json().get("code") in EXPECTED_BUSY
    except ValueError:
        return False


# ---------------------------------------------------------------------------------------------
# What must hold afterwards.

def unfinished_jobs(database_url: str) -> dict[str, int]:
    """Jobs by status."""
    database = Database(database_url)
    try:
        with database.session() as session:
            return {status: int(n) for status, n in
                    session.execute(select(Job.status, func.count(Job.id)).group_by(Job.status))}
    finally:
        database.dispose()


def wait_for_final_jobs(database_url: str, timeout: float) -> dict[str, int]:
    """Jobs by status once none is queued or processing (or at the timeout)."""
    wait_until(lambda: not {"queued", "processing"} & unfinished_jobs(database_url).keys(), timeout, interval=0.5)
    return unfinished_jobs(database_url)


@dataclass
class Rows:
    by_entity: dict[str, list[int]]  # the scenario's entities -> their items
    items: dict[int, MediaItem]
    variants: dict[int, list[MediaVariant]]


def rows_of(database_url: str, prefix: str) -> Rows:
    database = Database(database_url)
    try:
        with database.session() as session:
            items = {item.id: item for item in session.scalars(
                select(MediaItem).where(MediaItem.entity_id.like(f"{prefix}%")))}
            variants: dict[int, list[MediaVariant]] = {}
            for variant in session.scalars(select(MediaVariant).where(MediaVariant.media_id.in_(list(items)))):
                variants.setdefault(variant.media_id, []).append(variant)
    finally:
        database.dispose()
    by_entity: dict[str, list[int]] = {}
    for item in items.values():
        by_entity.setdefault(item.entity_id, []).append(item.id)
    return Rows(by_entity, items, variants)


def unservable(api: ServerProcess, rows: Rows, upload: Upload) -> str | None:
    """Why an acknowledged upload is not complete and servable through `api` (None: it is)."""
    item = rows.items.get(upload.media_id)
    if item is None:
        return "no row"
    if item.processing_status != "ready":
        return f"processing_status {item.processing_status}"
    answer = requests.get(f"{api.url}/v1/media/{item.id}", headers=admin(), timeout=REQUEST_TIMEOUT)
    if answer.status_code != 200:
        return f"GET /v1/media/{item.id}: {answer.status_code}"
    paths = {"original": item.byte_size, **{f"{v.name}.{FORMAT_EXTENSIONS[v.format]}": v.byte_size
                                           for v in rows.variants.get(item.id, [])}}
    if not any(v.format == "webp" for v in rows.variants.get(item.id, [])):
        return "no WebP variants: its job did not run"
    for name, size in paths.items():
        got = requests.get(f"{api.url}/v1/images/{item.public_id}/{name}", headers=admin(), timeout=REQUEST_TIMEOUT)
        if got.status_code != 200 or len(got.content) != size:
            return f"{name}: {got.status_code}, {len(got.content)} bytes of {size}"
    return None


def rate_limit_is_shared(first: ServerProcess, second: ServerProcess, entity: str, limit: int) -> list[int]:
    """`limit` uploads of one principal on `first`, then one more on `second`: the statuses, in order."""
    auth = bearer(f"{entity}-limited", verified=True, grants=(f"property:{entity}",))
    statuses = []
    for target in [first] * limit + [second]:
        photo = PHOTOS[2]
        statuses.append(requests.post(f"{target.url}/v1/media/properties/{entity}/photos", headers=auth,
                                      files={"file": (photo.name, photo.read_bytes())},
                                      timeout=REQUEST_TIMEOUT).status_code)
    return statuses


def renders(api: ServerProcess) -> int:
    """`mediahub_renders_total` of one API process."""
    text = requests.get(f"{api.url}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"},
                        timeout=REQUEST_TIMEOUT).text
    match = re.search(r"^mediahub_renders_total ([0-9.e+]+)$", text, re.MULTILINE)
    assert match, text[:2000]
    return int(float(match.group(1)))


@dataclass
class SingleFlight:
    renders: int  # renders made across the processes for the rendition
    statuses: list[int]
    bodies: int  # distinct bodies answered
    refusals: list[str]  # what the answers other than 200 said


def render_from_both(apis: list[ServerProcess], media_id: int, width: int, per_process: int) -> SingleFlight:
    """Ask every process at once, `per_process` requests each, for one rendition no one has made yet."""
    signed = requests.post(f"{apis[0].url}/v1/media/{media_id}/transform-url", headers=admin(),
                           json={"width": width, "format": "webp"}, timeout=REQUEST_TIMEOUT)
    assert signed.status_code == 200, signed.text
    path = "/" + signed.json()["url"].split("/", 3)[3]
    before = sum(renders(api) for api in apis)
    barrier = threading.Barrier(per_process * len(apis))

    def fetch(api: ServerProcess) -> requests.Response:
        barrier.wait(timeout=30)
        return requests.get(f"{api.url}{path}", headers=admin(), timeout=REQUEST_TIMEOUT)

    with ThreadPoolExecutor(per_process * len(apis)) as pool:
        answers = list(pool.map(fetch, [api for api in apis for _ in range(per_process)]))
    return SingleFlight(sum(renders(api) for api in apis) - before, [a.status_code for a in answers],
                        len({a.content for a in answers}), [a.text[:300] for a in answers if a.status_code != 200])


def render_claims_left(database_url: str) -> int:
    database = Database(database_url)
    try:
        with database.session() as session:
            return session.scalar(select(func.count()).select_from(RenderClaim)) or 0
    finally:
        database.dispose()


def media_of_lost_jobs(database_url: str) -> set[int]:
    """Items with a job that was claimed more than once: a run of it ended without recording an outcome (its
    worker was killed and the lease ran out) or failed. A killed run may have written some of the item's objects,
    which the re-run does not remove once the item has been deleted meanwhile. A re-run that succeeds clears the
    lost run's error, so the attempts are what tells."""
    database = Database(database_url)
    try:
        with database.session() as session:
            return set(session.scalars(select(Job.media_id).where(Job.attempts > 1, Job.media_id.is_not(None))))
    finally:
        database.dispose()


def stray_entity(key: str) -> str:
    """The entity whose upload wrote an object: properties/photos/{entity}/..."""
    return key.split("/")[2]
