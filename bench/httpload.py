"""Section `http`: uploads/s through uvicorn on loopback vs the pipeline's own
throughput on the same files, and `GET /healthz` latency while uploads run.

The bench starts uvicorn on a free 127.0.0.1 port over SQLite + local storage
in a temp dir (migrations applied first), runs a bounded number of concurrent
clients for a bounded time, and stops the server it started.
"""

from __future__ import annotations

import os
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
from bench.common import Config, console, table
from bench.harness import migrate, settings_for

SECRET = "bench-secret-0123456789abcdef0123456789abcdef"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def token() -> str:
    now = int(time.time())
    return jwt.encode({"sub": "bench", "roles": ["admin"], "verified": True, "iat": now, "exp": now + 3600},
                      SECRET, algorithm="HS256")


class Server:
    """uvicorn serving `bench.server:create`; `extra_env` and `settings_overrides` replace the bench's defaults."""

    def __init__(self, root: Path, workers: int, extra_env: dict[str, str] | None = None,
                 **settings_overrides) -> None:
        settings = settings_for(root, make_webp=False, **settings_overrides)
        migrate(settings)
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ, DATABASE_URL=settings.database_url, MEDIA_ROOT=str(settings.media_root),
                   TEMP_DIR=str(settings.temp_dir), JWT_SECRET=SECRET, STORAGE_TYPE="local", MAKE_WEBP="false",
                   UPLOAD_RATE_LIMIT="0", DEDUP_POLICY="allow", PUBLIC_BASE_URL=self.base,
                   # Pixel processes across all server workers = cores (more only queue behind each other).
                   PIXEL_WORKERS=os.environ.get("PIXEL_WORKERS", str(max(1, (os.cpu_count() or 1) // workers))),
                   VIPS_CONCURRENCY=throughput.vips_concurrency(workers),
                   PYTHONPATH=os.pathsep.join(filter(None, [os.getcwd(), os.environ.get("PYTHONPATH")])))
        env.update(extra_env or {})
        self.log = (root / "uvicorn.log").open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "bench.server:create", "--factory", "--http", "bench.server:HttpProtocol",
             "--host", "127.0.0.1",
             "--port", str(self.port), "--workers", str(workers), "--log-level", "warning", "--no-access-log"],
            env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"uvicorn exited with {self.proc.returncode}; see {self.log.name}")
            try:
                if httpx.get(f"{self.base}/healthz", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError("uvicorn did not become ready")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()  # our own child (and its workers, by uvicorn's own shutdown)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def _uploads(base: str, files: list[Path], clients: int, limit: int, seconds: float) -> tuple[int, float, list]:
    """`clients` threads post files until `limit` uploads are done or `seconds` pass."""
    headers = {"Authorization": f"Bearer {token()}"}
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
                reply = http.post(f"/v1/media/properties/h{index}n{number}/photos",
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


def _health(base: str, stop: threading.Event, latencies: list[float], interval: float = 0.02) -> None:
    with httpx.Client(base_url=base, timeout=30.0) as http:
        while not stop.is_set():
            start = time.perf_counter()
            http.get("/healthz")
            latencies.append((time.perf_counter() - start) * 1000)
            time.sleep(interval)


def p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))] if ordered else float("nan")


def run(cfg: Config) -> None:
    files = throughput.files_for(cfg)
    counts = (1,) if cfg.smoke else (1, 2)
    limit, seconds = (2, 30.0) if cfg.smoke else (18, 90.0)
    known = cfg.results.get("throughput", {}).get("rates", {})
    rows = []
    for workers in counts:
        root = cfg.work / f"http-{workers}"
        server = Server(root, workers)
        try:
            server.wait_ready()
            idle: list[float] = []
            stop = threading.Event()
            idle_thread = threading.Thread(target=_health, args=(server.base, stop, idle))
            idle_thread.start()
            time.sleep(0.3 if cfg.smoke else 2.0)
            stop.set()
            idle_thread.join()
            busy: list[float] = []
            stop = threading.Event()
            health_thread = threading.Thread(target=_health, args=(server.base, stop, busy))
            health_thread.start()
            clients = 2 * workers
            done, wall, errors = _uploads(server.base, files, clients, limit, seconds)
            stop.set()
            health_thread.join()
        finally:
            server.stop()
        if errors:
            raise RuntimeError(f"{len(errors)} uploads failed, first: {errors[0]}")
        pipeline = known.get(("upload", workers)) or throughput.measure(cfg, "upload", workers, files,
                                                                         max(1, limit // workers))
        rows.append((workers, clients, done, done / wall, pipeline, idle, busy))
    t = table(f"HTTP: uploads/s through uvicorn on loopback ({', '.join(f.name for f in files)}), and GET /healthz "
              "latency (ms) idle and while uploads run",
              ["uvicorn workers", "clients", "uploads", "uploads/s", "pipeline images/s", "http/pipeline",
               "healthz p50 idle", "healthz p99 idle", "healthz p50 busy", "healthz p99 busy", "healthz n"])
    for workers, clients, done, rate, pipeline, idle, busy in rows:
        t.add_row(str(workers), str(clients), str(done), f"{rate:.2f}", f"{pipeline:.2f}", f"{rate / pipeline:.2f}x",
                  f"{statistics.median(idle):.1f}", f"{p(idle, 0.99):.1f}", f"{statistics.median(busy):.1f}",
                  f"{p(busy, 0.99):.1f}", str(len(busy)))
    console.print(t)
