"""`kill -9` of the server with uploads in flight (PostgreSQL, S3 on moto behind a slow proxy).

After a restart: every acknowledged upload is there, no committed row lacks an object, and
`mediahub verify` lists exactly the stray objects the crash left; `--repair` removes them.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import requests

from mediahub.storage.s3 import S3Storage
from tests.reliability.harness import (
    FaultProxy,
    admin,
    record_peak,
    running,
    scale,
    server_env,
    snapshot,
    tally,
    verify_store,
)
from tests.support.corpus import CORPUS_DIR

IN_FLIGHT = scale(12, 40)
PHOTOS = [CORPUS_DIR / "images/good" / name for name in ("jpeg_flower.jpg", "png_hopper.png", "jpeg_hopper.jpg")]


def test_kill_9_during_uploads_loses_nothing_acknowledged_and_verify_repairs_the_rest(
        pg_url: str, bucket: S3Storage, s3_server: str, tmp_path) -> None:
    proxy = FaultProxy(int(s3_server.rsplit(":", 1)[1]), http=True)
    proxy.put_delay = 0.2  # slow puts: the kill lands while objects are being written
    env = server_env(pg_url, s3_endpoint=proxy.url, bucket=bucket.bucket, temp_dir=tmp_path / "spool")
    acknowledged: list[int] = []
    outcomes: list[str] = []
    lock = threading.Lock()
    try:
        with running(env, tmp_path / "server") as server:
            def send(index: int) -> None:
                photo = PHOTOS[index % len(PHOTOS)]
                try:
                    response = requests.post(f"{server.url}/v1/media/properties/crash{index % 4}/photos",
                                             headers=admin(), files={"file": (photo.name, photo.read_bytes())},
                                             timeout=60)
                except requests.RequestException:
                    with lock:
                        outcomes.append("cut")
                    return
                with lock:
                    outcomes.append(str(response.status_code))
                    if response.status_code == 201:
                        acknowledged.append(response.json()["id"])

            with ThreadPoolExecutor(IN_FLIGHT) as pool:
                futures = [pool.submit(send, i) for i in range(IN_FLIGHT)]
                # Kill once some uploads are done and others are mid-way (bounded wait).
                deadline = time.monotonic() + 60
                while proxy.puts_seen < IN_FLIGHT and time.monotonic() < deadline:
                    time.sleep(0.05)
                record_peak("crash", server.vmhwm_kib())
                server.kill9()
                for future in futures:
                    future.result(timeout=90)
            tally(faults_injected=1)
            assert "cut" in outcomes, outcomes  # the kill really interrupted uploads

            proxy.put_delay = 0.0
            server.start()  # the same settings, database and bucket
            assert server.answers()
            after = snapshot(pg_url, bucket)
            lost = [media_id for media_id in acknowledged if media_id not in after.row_keys]
            tally(uploads_sent=len(outcomes), uploads_stored=len(acknowledged), uploads_lost=len(lost))
            assert lost == [], "acknowledged uploads are gone"
            assert after.rows_missing_objects == {}, "a committed row lacks an object"

            report = verify_store(env)
            assert set(report["stray"]) == after.stray
            assert report["missing"] == {}
            repaired = verify_store(env, "--repair")
            assert repaired["removed"] == len(after.stray)
            final = snapshot(pg_url, bucket)
            assert final.stray == set() and final.rows_missing_objects == {}
            assert final.row_keys == after.row_keys  # repair touched no committed item
            assert verify_store(env)["stray"] == []
            tally(faults_survived=1, crash_strays_repaired=len(after.stray))
    finally:
        proxy.close()
