"""Section `memory`: peak RSS of a fresh process per row and input, and RSS above the idle process."""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys

from bench.common import Config, console, mib, ratio, table

ROWS = ("naive", "upload", "total", "floor")
INPUTS_FULL = ("jpeg-12mp", "jpeg-12mp-rot6", "jpeg-24mp", "heic-12mp")
INPUTS_SMOKE = ("jpeg-1mp-rot6",)


def probe(cfg: Config, row: str, name: str, index: int) -> dict:
    root = cfg.work / "memory" / f"{row}-{name}-{index}"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [os.getcwd(), os.environ.get("PYTHONPATH")])))
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    done = subprocess.run([sys.executable, "-m", "bench.rss_probe", row, str(cfg.inputs[name]), str(root)],
                          capture_output=True, text=True, env=env, timeout=300, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"memory probe {row} {name} failed:\n{done.stderr[-2000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    result["rusage_kib"] = after if after > before else None  # only known when this child set a new maximum
    return result


def run(cfg: Config) -> None:
    names = [n for n in (INPUTS_SMOKE if cfg.smoke else INPUTS_FULL) if n in cfg.inputs]
    repeats = 1
    results: dict[tuple[str, str], dict] = {}
    for index in range(repeats):
        for name in names:
            for row in (ROWS[:2] if cfg.smoke else ROWS):
                got = probe(cfg, row, name, index)
                slot = results.setdefault((name, row), {"idle": [], "peak": []})
                slot["idle"].append(got["idle_kib"])
                slot["peak"].append(got["peak_kib"])
    t = table(f"Memory: peak RSS of a fresh process per row (MiB, median of {repeats}); above idle = peak - RSS "
              "of the same process ready and idle (goal: upload <= 1/3 of naive)",
              ["input", "row", "idle", "peak", "above idle", "vs naive above idle", "goal"])
    for name in names:
        naive_above = statistics.median(results[(name, "naive")]["peak"]) - statistics.median(
            results[(name, "naive")]["idle"])
        for row in (ROWS[:2] if cfg.smoke else ROWS):
            idle = statistics.median(results[(name, row)]["idle"])
            peak = statistics.median(results[(name, row)]["peak"])
            above = peak - idle
            share = above / naive_above if naive_above > 0 else None
            goal = "" if row != "upload" or share is None else ("met" if share <= 1 / 3 else "NOT met")
            t.add_row(name, row, mib(idle), mib(peak), mib(above), ratio(share), goal)
    console.print(t)
