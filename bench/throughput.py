"""Section `throughput`: images/s with 1 and 2 worker processes on the same files.

Each worker builds its own runtime on one shared SQLite + store (as server
workers would), waits on a barrier, then processes its share; throughput is
all images over the wall time from the barrier to the last finish.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from pathlib import Path
from queue import Empty

from bench.common import Config, console, table
from bench.harness import Bench

FILES_FULL = ("jpeg-12mp", "jpeg-12mp-rot6", "heic-12mp", "png-alpha-1.3mp")  # what phones send
FILES_SMOKE = ("jpeg-1mp-rot6",)


def files_for(cfg: Config) -> list[Path]:
    names = FILES_SMOKE if cfg.smoke else FILES_FULL
    return [cfg.inputs[n] for n in names if n in cfg.inputs]


def vips_concurrency(workers: int) -> str:
    return str(max(1, (os.cpu_count() or 1) // workers))


def _worker(row: str, root: str, files: list[str], count: int, offset: int, barrier, queue) -> None:
    from bench import naive

    # Every variant in the upload, as an HTTP server that runs its own jobs does before its next request.
    bench = Bench.create(Path(root), defer_slow_variants=False) if row == "upload" else None
    work = (lambda p: bench.upload(p)) if bench else (lambda p: naive.process(p))
    work(Path(files[0]))  # warm: imports, first-call set-up
    barrier.wait()
    start = time.perf_counter()
    for index in range(count):
        work(Path(files[(offset + index) % len(files)]))
    queue.put((start, time.perf_counter()))
    if bench:
        bench.close()


def _collect(queue, procs, limit_seconds: float = 600) -> list[tuple[float, float]]:
    """Each worker's (start, end), failing at once when a worker dies instead of waiting out the limit."""
    spans: list[tuple[float, float]] = []
    deadline = time.monotonic() + limit_seconds
    while len(spans) < len(procs):
        try:
            spans.append(queue.get(timeout=1))
        except Empty:
            dead = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
            if dead or time.monotonic() > deadline:
                raise RuntimeError(f"throughput workers failed (exit codes {dead}) or timed out") from None
    return spans


def measure(cfg: Config, row: str, workers: int, files: list[Path], per_worker: int) -> float:
    """Images per second of `workers` processes each doing `per_worker` images."""
    root = cfg.work / "throughput"
    if row == "upload":
        Bench.create(root).close()  # migrate once, before the workers race
    ctx = mp.get_context("spawn")
    barrier, queue = ctx.Barrier(workers), ctx.Queue()
    old = os.environ.get("VIPS_CONCURRENCY")
    os.environ["VIPS_CONCURRENCY"] = vips_concurrency(workers)
    try:
        procs = [ctx.Process(target=_worker, args=(row, str(root), [str(f) for f in files], per_worker, i, barrier,
                                                   queue)) for i in range(workers)]
        for proc in procs:
            proc.start()
        spans = _collect(queue, procs)
        for proc in procs:
            proc.join(timeout=60)
            if proc.exitcode != 0:
                raise RuntimeError(f"throughput worker exited with {proc.exitcode}")
    finally:
        if old is None:
            os.environ.pop("VIPS_CONCURRENCY", None)
        else:
            os.environ["VIPS_CONCURRENCY"] = old
    wall = max(end for _, end in spans) - min(start for start, _ in spans)
    return workers * per_worker / wall


def run(cfg: Config) -> None:
    files = files_for(cfg)
    per_worker = 1 if cfg.smoke else 9
    counts = (1,) if cfg.smoke else (1, 2)
    rows = ("upload", "naive")
    rates: dict[tuple[str, int], float] = {}
    for workers in counts:  # rows side by side per worker count
        for row in rows:
            rates[(row, workers)] = measure(cfg, row, workers, files, per_worker)
    cfg.results["throughput"] = {"files": [f.name for f in files], "rates": rates}
    t = table(f"Throughput: images/s over {', '.join(f.name for f in files)} ({per_worker} images per worker, "
              f"{os.cpu_count()} cores)", ["row", "workers", "VIPS_CONCURRENCY", "images/s", "vs naive",
                                           "scaling vs 1 worker"])
    for workers in counts:
        for row in rows:
            rate = rates[(row, workers)]
            t.add_row(row, str(workers), vips_concurrency(workers), f"{rate:.2f}",
                      f"{rate / rates[('naive', workers)]:.2f}x",
                      f"{rate / rates[(row, 1)]:.2f}x")
    console.print(t)
