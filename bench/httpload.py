"""Section `http`: uploads/s through `mediahub serve` with 1 and 2 server processes on loopback vs the
pipeline's own throughput in as many processes, on the same mixed phone photos, and `GET /healthz`
latency while the uploads run.

Each server is started through the command line as a deployment starts it (no PIXEL_WORKERS: the
default `serve` picks), over SQLite + local storage in a temp dir, and warmed up; then rounds alternate
a burst of concurrent uploads through HTTP with the pipeline doing the same number of images in as many
processes (`throughput.measure`), so both meet the same noise. Jobs are off on both sides (MAKE_WEBP
false, every variant made in the upload): both sides do the same work, so the ratio is what serving costs.
"""

from __future__ import annotations

import itertools
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import jwt

from bench import throughput
from bench.common import Config, console, table, verdict

SECRET = "bench-secret-0123456789abcdef0123456789abcdef"
# As the pipeline's runs: no WebP job, every variant in the upload (a deferred one would be a job in the server).
SETTINGS = {"UPLOAD_RATE_LIMIT": "0", "MAKE_WEBP": "false", "DEDUP_POLICY": "allow", "DEFER_SLOW_VARIANTS": "false"}
GOAL_RATIO = 0.8  # HTTP with 2 server processes / the 2-process pipeline, at least
GOAL_HEALTHZ_P99_MS = 50.0
_bursts = itertools.count()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def token() -> str:
    now = int(time.time())
    return jwt.encode({"sub": "bench", "roles": ["admin"], "verified": True, "iat": now, "exp": now + 3600},
                      SECRET, algorithm="HS256")


def make_run_environment(makefile: Path = Path("Makefile")) -> dict[str, str]:
    """The settings `make run` puts in the environment (`NAME=$${NAME:-default}` in its recipe)."""
    recipe = re.search(r"^run:.*?\n((?:\t.*\n?)+)", makefile.read_text(), re.M)
    found = dict(re.findall(r"\b([A-Z][A-Z0-9_]*)=\$\$\{\1:-([^}]*)\}", recipe.group(1) if recipe else ""))
    if not found:
        raise RuntimeError(f"no NAME=$${{NAME:-default}} settings found in the run target of {makefile}")
    return found


def _clean_environment() -> dict[str, str]:
    """This process's environment without any MediaHub or libvips setting: a server gets only what it is given."""
    from mediahub.config import Settings

    names = {name.upper() for name in Settings.model_fields} | {"VIPS_CONCURRENCY", "AWS_REGION"}
    return {key: value for key, value in os.environ.items() if key.upper() not in names}


class Server:
    """`mediahub serve` (through `python -m mediahub.cli`, as the console script runs it) on a free loopback port,
    over SQLite + local storage in `root`, migrated first by `mediahub db upgrade`; `settings` are its
    environment beside the database, store and JWT secret. Ready once `/healthz` answers: after its
    lifespan started the pixel processes."""

    def __init__(self, root: Path, settings: dict[str, str], workers: int = 1) -> None:
        import mediahub

        root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        source = str(Path(mediahub.__file__).resolve().parents[1])  # the code this bench imports
        env = _clean_environment() | {
            "DATABASE_URL": f"sqlite:///{root / 'mediahub.db'}", "MEDIA_ROOT": str(root / "media"),
            "JWT_SECRET": SECRET, "PYTHONPATH": os.pathsep.join(filter(None, [source, os.environ.get("PYTHONPATH")])),
        } | settings
        command = [sys.executable, "-m", "mediahub.cli"]
        subprocess.run([*command, "db", "upgrade"], env=env, cwd=root, check=True, capture_output=True)
        self.log = (root / "server.log").open("w")
        self.proc = subprocess.Popen([*command, "serve", "--host", "127.0.0.1", "--port", str(self.port),
                                      "--workers", str(workers)],
                                     env=env, cwd=root, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited with {self.proc.returncode}; see {self.log.name}")
            try:
                if self.ready():
                    return
            except (OSError, httpx.HTTPError):
                pass
            time.sleep(0.2)
        raise RuntimeError(f"the server did not become ready; see {self.log.name}")

    def ready(self) -> bool:
        return httpx.get(f"{self.base}/healthz", timeout=1.0).status_code == 200

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()  # our own child (its workers and pixel processes stop with it)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)  # its own session: the server and every process it started
                self.proc.wait()
        self.log.close()


def _uploads(base: str, files: list[Path], clients: int, limit: int, seconds: float) -> tuple[int, float, list]:
    """`clients` threads post files until `limit` uploads are done or `seconds` pass."""
    headers = {"Authorization": f"Bearer {token()}"}
    burst = next(_bursts)  # fresh properties every burst
    lock, counter, errors, done = threading.Lock(), [0], [], [0]
    bodies = [(f.name, f.read_bytes()) for f in files]
    deadline = time.monotonic() + seconds

    def client(index: int) -> None:
        with httpx.Client(base_url=base, timeout=120.0, headers=headers) as http:
            while time.monotonic() < deadline:
                with lock:
                    if counter[0] >= limit:
                        return
                    number = counter[0]
                    counter[0] += 1
                name, body = bodies[number % len(bodies)]
                reply = http.post(f"/v1/media/properties/h{burst}c{index}n{number}/photos",
                                  files={"file": (name, body, "application/octet-stream")})
                with lock:
                    if reply.status_code == 201:
                        done[0] += 1
                    else:
                        errors.append(f"{reply.status_code} {reply.text[:200]}")

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return done[0], time.perf_counter() - start, errors


def _health_while(base: str, work, interval: float = 0.02) -> list[float]:
    """Milliseconds of each GET /healthz sent every `interval` s on one connection while `work()` runs."""
    latencies: list[float] = []
    stop = threading.Event()

    def probe() -> None:
        with httpx.Client(base_url=base, timeout=30.0) as http:
            while not stop.is_set():
                start = time.perf_counter()
                http.get("/healthz").raise_for_status()
                latencies.append((time.perf_counter() - start) * 1000)
                time.sleep(interval)

    thread = threading.Thread(target=probe)
    thread.start()
    try:
        work()
    finally:
        stop.set()
        thread.join()
    return latencies


def p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))] if ordered else float("nan")


def pixel_processes(server_processes: int) -> int:
    """PIXEL_WORKERS as a `mediahub serve` with none set picks it, per server process."""
    from mediahub.api.serving import serving_settings
    from mediahub.config import Settings

    return serving_settings(Settings.model_construct(), server_processes).pixel_workers


def run(cfg: Config) -> None:
    files = throughput.files_for(cfg)
    counts = (1,) if cfg.smoke else (1, 2)
    rounds = 1 if cfg.smoke else 3
    per_process = 1 if cfg.smoke else 2 * len(files)  # images per process and round, on both sides
    rows = []
    for workers in counts:
        server = Server(cfg.work / f"http-{workers}", SETTINGS, workers)
        clients, limit = 2 * workers, per_process * workers
        rates, pipeline, idle, busy = [], [], [], []
        try:
            server.wait_ready()
            errors = _uploads(server.base, files, clients, clients, 120.0)[2]  # warm-up: first calls, connections
            idle = _health_while(server.base, lambda: time.sleep(0.3 if cfg.smoke else 2.0))
            for _ in range(rounds):
                outcome: list = []
                busy += _health_while(server.base, lambda: outcome.extend(
                    _uploads(server.base, files, clients, limit, 300.0)))
                done, wall, failed = outcome
                errors += failed
                rates.append(done / wall)
                pipeline.append(throughput.measure(cfg, "upload", workers, files, per_process))
        finally:
            server.stop()
        if errors:
            raise RuntimeError(f"{len(errors)} uploads failed, first: {errors[0]}")
        rows.append((workers, clients, limit * rounds, statistics.median(rates), statistics.median(pipeline),
                     idle, busy))
    t = table(f"HTTP: uploads/s through `mediahub serve --workers N` on loopback ({', '.join(f.name for f in files)}; "
              "PIXEL_WORKERS unset) vs the pipeline in N processes, medians of "
              f"{rounds} alternating rounds; GET /healthz latency (ms) idle and while uploads run",
              ["server x pixel processes", "clients", "uploads", "uploads/s", "pipeline images/s", "http/pipeline",
               "goal", "healthz p50/p99 idle", "healthz p50/p99 busy (n)", "p99 goal", "verdict"])
    for workers, clients, done, rate, pipeline_rate, idle, busy in rows:
        share = rate / pipeline_rate
        goal = workers == 2
        t.add_row(f"{workers} x {pixel_processes(workers)}", str(clients), str(done), f"{rate:.2f}",
                  f"{pipeline_rate:.2f}", f"{share:.2f}x", f">= {GOAL_RATIO:g}x" if goal else "",
                  f"{statistics.median(idle):.1f} / {p(idle, 0.99):.1f}",
                  f"{statistics.median(busy):.1f} / {p(busy, 0.99):.1f} ({len(busy)})",
                  f"< {GOAL_HEALTHZ_P99_MS:g}" if goal else "",
                  verdict(share >= GOAL_RATIO and p(busy, 0.99) < GOAL_HEALTHZ_P99_MS if goal else None))
    console.print(t)
