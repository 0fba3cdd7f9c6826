"""Section `phone`: what a client waits for when it uploads a phone photo, through HTTP.

Two servers run side by side, each started through the command line over its own
SQLite + local store: the `make run` configuration (the settings its recipe
sets) and a plain `mediahub serve` (none set). One client uploads sequentially
(POST /v1/media/properties/{id}/photos, a fresh property each time) after one
warm-up upload per input and server. Every repeat runs, per input and in
rotating order, the naive pipeline on the same file in this process and one
upload to each server; after an upload, GET /v1/media/{id} is polled until the
item is `ready`: that is the total work, the jobs the response left pending
(WebP and AVIF: MAKE_AVIF is on here) run by the server's in-process runner.
For HEIC the HEVC decode alone (the pipeline's own Pillow plugin, in this
process) is measured in the same rotation: the floor an upload is held against;
and every input is also uploaded in this process (the ingest use case, no HTTP,
no jobs), so the cost of serving shows apart from the pipeline's.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench import naive
from bench.common import Config, console, ms, ratio, table, timed, verdict
from bench.harness import Bench
from bench.httpload import Server, make_run_environment, p, token
from bench.inputs import SPECS

INPUTS_FULL = ("jpeg-12mp", "jpeg-12mp-rot6", "jpeg-24mp", "png-alpha-1.3mp", "png-alpha-2mp", "heic-12mp")
INPUTS_SMOKE = ("jpeg-1mp-rot6", "png-alpha-0.5mp")
HEVC_FLOOR = "hevc decode"
IN_PROCESS = "in process"  # the same upload through IngestService in this process: what HTTP adds is the rest
POLL_SECONDS = 0.01
READY_TIMEOUT = 300.0
# Both servers: one client uploads faster than the per-caller rate limit allows; the total counts AVIF too.
COMMON_SETTINGS = {"UPLOAD_RATE_LIMIT": "0", "MAKE_AVIF": "true"}


@dataclass(frozen=True)
class Goal:
    speedup: float  # naive / upload latency, at least
    reference: str | None = None  # another row of the same server, or HEVC_FLOOR ...
    within: float | None = None  # ... that the upload latency stays within this factor of
    total: bool = False  # time to ready (all the work) at most the naive pipeline's time


GOALS = {
    "jpeg-12mp": Goal(5.0, total=True),
    "jpeg-12mp-rot6": Goal(5.0, "jpeg-12mp", 1.10, total=True),
    "jpeg-24mp": Goal(6.0),
    "png-alpha-1.3mp": Goal(3.0),
    "png-alpha-2mp": Goal(3.0),
    "heic-12mp": Goal(3.5, HEVC_FLOOR, 1.5, total=True),
}


def server_configurations() -> dict[str, dict[str, str]]:
    return {"make run": make_run_environment(), "mediahub serve": {}}


class Client:
    """One client of one server: an upload's latency, then the time until its item is ready."""

    def __init__(self, server: Server) -> None:
        self.http = httpx.Client(base_url=server.base, timeout=120.0, headers={"Authorization": f"Bearer {token()}"})
        self.count = 0
        self.pending: dict[str, set[str]] = {}  # file name -> processing_status values its responses carried

    def upload(self, name: str, body: bytes) -> tuple[float, float]:
        """(ms until the 201, ms until GET says ready)."""
        self.count += 1
        start = time.perf_counter()
        reply = self.http.post(f"/v1/media/properties/phone{self.count}/photos",
                               files={"file": (name, body, "application/octet-stream")})
        answered = time.perf_counter()
        if reply.status_code != 201:
            raise RuntimeError(f"upload of {name}: {reply.status_code} {reply.text[:300]}")
        item = reply.json()
        self.pending.setdefault(name, set()).add(item["processing_status"])
        deadline = answered + READY_TIMEOUT
        while item["processing_status"] not in ("ready", "failed"):
            if time.perf_counter() > deadline:
                raise RuntimeError(f"{name}: item {item['id']} not ready after {READY_TIMEOUT:g} s")
            time.sleep(POLL_SECONDS)
            item = self.http.get(f"/v1/media/{item['id']}").raise_for_status().json()
        if item["processing_status"] != "ready":
            raise RuntimeError(f"{name}: item {item['id']} ended {item['processing_status']}")
        return (answered - start) * 1000, (time.perf_counter() - start) * 1000

    def close(self) -> None:
        self.http.close()


def hevc_decode(path: Path) -> None:
    """The HEVC decode alone, as the pipeline opens a HEIF (its plugin, its decode threads)."""
    from mediahub.pipeline.probe import open_image

    with open_image(path, "heif") as image:
        image.load()


def decode_threads() -> int:
    import pillow_heif

    return pillow_heif.options.DECODE_THREADS


def run(cfg: Config) -> None:
    names = [n for n in (INPUTS_SMOKE if cfg.smoke else INPUTS_FULL) if n in cfg.inputs]
    if not names:
        console.print("phone: none of its inputs were made in this run")
        return
    configurations = server_configurations()
    servers: dict[str, Server] = {}
    clients: dict[str, Client] = {}
    in_process = Bench.create(cfg.work / "phone-in-process")
    try:
        for index, (label, settings) in enumerate(configurations.items()):
            servers[label] = Server(cfg.work / f"phone-{index}", COMMON_SETTINGS | settings)
        for server in servers.values():
            server.wait_ready()
        clients = {label: Client(server) for label, server in servers.items()}
        samples = _measure(cfg, names, clients, in_process)
        pending = {label: client.pending for label, client in clients.items()}
    finally:
        for client in clients.values():
            client.close()
        for server in servers.values():
            server.stop()
        in_process.close()
    _print(cfg, names, configurations, samples, pending)


def _measure(cfg: Config, names: list[str], clients: dict[str, Client], in_process: Bench) -> dict:
    """samples[(input, row)] -> list of (latency ms, time to ready ms); rows: naive, each server, in process,
    the floor."""
    bodies = {name: cfg.inputs[name].read_bytes() for name in names}
    rows: dict[tuple[str, str], object] = {}
    for name in names:
        path = cfg.inputs[name]
        rows[(name, "naive")] = lambda path=path: (timed(lambda: naive.process(path)),) * 2
        for label, client in clients.items():
            rows[(name, label)] = lambda client=client, name=name, path=path: client.upload(path.name, bodies[name])
        rows[(name, IN_PROCESS)] = lambda path=path: (timed(lambda: in_process.upload(path)),) * 2
        if GOALS.get(name, Goal(0)).reference == HEVC_FLOOR:
            rows[(name, HEVC_FLOOR)] = lambda path=path: (timed(lambda: hevc_decode(path)),) * 2
    for row in rows.values():  # warm-up: imports, pixel processes, first-call set-up
        row()
    samples: dict[tuple[str, str], list[tuple[float, float]]] = {key: [] for key in rows}
    repeats = {name: cfg.repeats(SPECS[name].megapixels) for name in names}
    for rep in range(max(repeats.values())):
        for name in [n for n in names if rep < repeats[n]]:
            keys = [key for key in rows if key[0] == name]
            for key in keys[rep % len(keys):] + keys[:rep % len(keys)]:
                samples[key].append(rows[key]())
    return samples


def _print(cfg: Config, names: list[str], configurations: dict[str, dict[str, str]], samples: dict,
           pending: dict[str, dict[str, set[str]]]) -> None:
    def median(key, index=0):
        values = samples.get(key)
        return statistics.median(v[index] for v in values) if values else None

    def p90(key):
        return p([v[0] for v in samples[key]], 0.9)

    title = ("Phone photos through HTTP: upload latency (ms; one client, sequential) vs the naive pipeline on the same "
             "file, same run; ready = until GET says ready (the jobs pending at the 201: WebP + AVIF); +http = upload "
             "- in process\n  servers: "
             + "; ".join(f"{label} ({' '.join(f'{k}={v}' for k, v in settings.items()) or 'nothing set'})"
                         for label, settings in configurations.items())
             + f"; HEVC floor: pillow-heif decode, {decode_threads()} decode threads")
    t = table(title, ["input", "row", "n", "naive", "p50", "p90", "naive/p50", "goal", "vs", "vs goal", "+http",
                      "ready p50", "ready/naive", "ready goal", "at 201", "verdict"])
    for name in names:
        goal = GOALS.get(name)
        naive_ms = median((name, "naive"))
        for label in configurations:
            key = (name, label)
            latency, ready = median(key), median(key, 1)
            speedup = naive_ms / latency
            against = None
            if goal and goal.reference:
                reference = median((name, HEVC_FLOOR) if goal.reference == HEVC_FLOOR else (goal.reference, label))
                against = latency / reference if reference else None
            checks = []
            if goal:
                checks.append(speedup >= goal.speedup)
                if goal.within and against is not None:
                    checks.append(against <= goal.within)
                if goal.total:
                    checks.append(ready <= naive_ms)
            t.add_row(name, label, str(len(samples[key])), ms(naive_ms), ms(latency), ms(p90(key)), ratio(speedup),
                      f">= {goal.speedup:g}x" if goal else "",
                      "" if against is None else f"{against:.2f}x {goal.reference}",
                      f"<= {goal.within:g}x" if goal and goal.within else "",
                      ms(latency - median((name, IN_PROCESS))), ms(ready), ratio(ready / naive_ms),
                      "<= 1x" if goal and goal.total else "",
                      ",".join(sorted(pending[label].get(cfg.inputs[name].name, ()))),
                      verdict(all(checks) if checks else None))
        for reference in (IN_PROCESS, HEVC_FLOOR):
            key = (name, reference)
            if key in samples:
                t.add_row(name, reference, str(len(samples[key])), ms(naive_ms), ms(median(key)), ms(p90(key)),
                          ratio(naive_ms / median(key)), *[""] * 9)
    console.print(t)
