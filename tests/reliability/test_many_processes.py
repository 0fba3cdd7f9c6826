"""Two API processes and two `mediahub worker`s on PostgreSQL, S3 (moto's server) and RabbitMQ, then Redis
as the broker; the upload rate limit counted in Redis. Mixed traffic (uploads, reads of items and images,
moderation, deletes, batch actions) runs across both API processes; mid-run one API process and one worker
are killed (SIGKILL).

Afterwards: every acknowledged upload is ready and servable through the surviving API process (original and
every variant), no upload made two rows, no object is orphaned or missing (`mediahub verify`: the only stray
objects belong to requests the kill cut, and `--repair` removes them), every job is done or failed. Before
the traffic: the rate limit is shared (hits on one process count on the other) and a rendition asked of
both processes at once is rendered once (`mediahub_renders_total` across both). The throughput with two
API processes is printed beside that with one (and kept for `python -m bench.reliability`).
"""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from mediahub.storage.s3 import S3Storage
from tests.reliability.cluster import (
    LARGE_PHOTO,
    MANY_PROCESSES,
    METRICS_TOKEN,
    Traffic,
    cluster,
    media_of_lost_jobs,
    rate_limit_is_shared,
    render_claims_left,
    render_from_both,
    rows_of,
    stray_entity,
    tracebacks,
    unservable,
    wait_for_final_jobs,
)
from tests.reliability.harness import HOST, admin, scale, server_env, tally, verify_store, wait_until
from tests.support.services import BROKERS, require_service

pytestmark = [pytest.mark.postgres, pytest.mark.s3, pytest.mark.slow]

PHASE_SECONDS = scale(5, 15)  # each throughput phase: one API process, then two
CHAOS_SECONDS = scale(12, 30)  # the run the kills land in (at its middle)
CLIENTS = scale(6, 8)
RATE_LIMIT = 3  # uploads per principal per minute: the scenario's traffic uploads once per principal
JOBS_SETTLE_SECONDS = 120.0  # bound on the wait for every job to end (leases of 10 s run out well before)


def _env(pg_url: str, bucket: S3Storage, s3_server: str, spool: Path, queue_url: str, run: str) -> dict[str, str]:
    return server_env(
        pg_url, s3_endpoint=s3_server, bucket=bucket.bucket, temp_dir=spool,
        queue_url=queue_url, queue_name=f"mh-{run}", rate_limit_redis_url=BROKERS["redis"][2],
        rate_limit_prefix=f"mh-{run}", upload_rate_limit=RATE_LIMIT,
        make_webp="true", defer_slow_variants="true",  # every upload leaves a job to the workers
        job_lease_seconds=10, job_backoff_seconds=0.5, pixel_workers=1, metrics_token=METRICS_TOKEN,
        shutdown_grace_seconds=5)


def _wait_ready(url: str, media_id: int) -> bool:
    def ready() -> bool:
        return requests.get(f"{url}/v1/media/{media_id}", headers=admin(), timeout=30).json().get(
            "processing_status") == "ready"
    return wait_until(ready, 60, interval=0.2)


@pytest.mark.parametrize("broker", ["rabbitmq", "redis"])
def test_many_processes_survive_kills_with_every_invariant(broker: str, pg_url: str, bucket: S3Storage,
                                                          s3_server: str, tmp_path: Path) -> None:
    name, port, queue_url = BROKERS[broker]
    require_service(name, HOST, port)
    require_service("Redis", HOST, BROKERS["redis"][1])
    run = uuid.uuid4().hex[:10]
    prefix = f"mp{run}"  # the scenario's entities; the traffic's are f"{prefix}t{n}"
    env = _env(pg_url, bucket, s3_server, tmp_path / "spool", queue_url, run)
    with cluster(env, tmp_path) as procs:
        first, second = procs.apis

        # Shared rate limit: the principal's window is in Redis, whichever process counts a hit.
        assert rate_limit_is_shared(first, second, f"{prefix}limit", RATE_LIMIT) == [201] * RATE_LIMIT + [429]

        # Shared single flight: one rendition asked of both processes at once is rendered once.
        photo = LARGE_PHOTO.read_bytes()
        source = requests.post(f"{first.url}/v1/media/properties/{prefix}render/photos", headers=admin(),
                               files={"file": (LARGE_PHOTO.name, photo)}, timeout=60)
        assert source.status_code == 201, source.text
        source_id = source.json()["id"]
        assert _wait_ready(first.url, source_id)
        for width in (1400, 1000, 700):
            flight = render_from_both([first, second], source_id, width, per_process=4)
            assert flight.statuses == [200] * 8 and flight.bodies == 1, flight.refusals
            assert flight.renders == 1, f"{flight.renders} renders of one rendition across two processes"
        assert render_claims_left(pg_url) == 0

        # Throughput: the same traffic through one API process, then through both.
        traffic = Traffic(f"{prefix}t", [first])
        one_api = traffic.run(PHASE_SECONDS, CLIENTS) / PHASE_SECONDS
        traffic.targets = [first, second]
        two_apis = traffic.run(PHASE_SECONDS, CLIENTS) / PHASE_SECONDS
        print(f"\n{broker}: {one_api:.1f} requests/s through one API process, {two_apis:.1f} through two")

        # Kills mid-run: one API process and one worker, SIGKILL.
        def kill() -> None:
            time.sleep(CHAOS_SECONDS / 2)
            traffic.targets = [first]
            second.kill9()
            procs.workers[0].kill9()

        killer = threading.Thread(target=kill)
        killer.start()
        traffic.run(CHAOS_SECONDS, CLIENTS)
        killer.join()
        assert first.alive() and procs.workers[1].alive()
        assert traffic.unexpected == [], (traffic.unexpected[:10], tracebacks([*procs.apis, *procs.workers]))
        assert traffic.cuts_on_survivors == 0, "a request to a process that was not killed was cut"

        # Every job ends: the killed worker's leases run out and the surviving worker takes its jobs.
        jobs = wait_for_final_jobs(pg_url, JOBS_SETTLE_SECONDS)
        assert not {"queued", "processing"} & jobs.keys(), jobs

        # No upload made two rows; every acknowledged upload is complete and servable through the survivor.
        rows = rows_of(pg_url, traffic.prefix)
        assert {entity: ids for entity, ids in rows.by_entity.items() if len(ids) > 1} == {}
        kept = [u for u in traffic.uploads.values() if u.media_id not in traffic.deleted | traffic.unsure]
        assert [u.media_id for u in traffic.uploads.values() if u.media_id in traffic.deleted
                and u.media_id in rows.items] == [], "a deleted item is still there"
        maybe = [u for u in traffic.uploads.values() if u.media_id in traffic.unsure and u.media_id in rows.items]
        with ThreadPoolExecutor(8) as pool:
            problems = {u.media_id: why for u, why in zip(kept + maybe, pool.map(
                lambda u: unservable(first, rows, u), kept + maybe)) if why is not None}
        assert problems == {}, problems

        # No object orphaned, none missing: strays only of what the kills interrupted (a request cut, or a job of
        # the killed worker), and `--repair` removes them.
        interrupted = traffic.cut_entities | {traffic.uploads[media_id].entity for media_id in
                                              media_of_lost_jobs(pg_url) if media_id in traffic.uploads}
        report = verify_store(env)
        assert report["missing_count"] == 0, report["missing"]
        assert report["stray_count"] == len(report["stray"]), "more strays than the report lists"
        assert {stray_entity(key) for key in report["stray"]} <= interrupted, report["stray"]
        repaired = verify_store(env, "--repair")
        assert repaired["removed"] == report["stray_count"]
        assert verify_store(env)["stray_count"] == 0

    cut = sum(n for answer, n in traffic.answers.items() if answer.endswith(" cut"))
    MANY_PROCESSES[broker] = {"one_api": one_api, "two_apis": two_apis, "kills": 2, "uploads": len(traffic.uploads),
                              "checked": len(kept) + len(maybe), "cut": cut, "strays_repaired": report["stray_count"],
                              "jobs": jobs}
    tally(faults_injected=2, faults_survived=2)
