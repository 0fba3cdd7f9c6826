"""`python -m bench [pipeline|memory|throughput|http|phone|quality|delivery|tagging|uploads|scale|library ...] [--smoke]`."""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

SECTIONS = {"pipeline": "bench.pipeline", "memory": "bench.memory", "throughput": "bench.throughput",
            "http": "bench.httpload", "phone": "bench.phone", "quality": "bench.quality",
            "delivery": "bench.delivery", "tagging": "bench.tagging", "uploads": "bench.uploads", "scale": "bench.scale",
            "library": "bench.library"}
# Run only when named (`make bench` runs each on its own): `scale` fills databases with 10^6 rows (half an hour);
# `uploads` sends gigabytes through a fresh server per transport and round; `library` fills two databases and
# drives a browser.
ON_REQUEST = ("uploads", "scale", "library")
# Sections that read none of the generated input files (`uploads` makes and caches its own).
NO_INPUTS = ("tagging", "uploads", "scale", "library")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("sections", nargs="*", choices=[*SECTIONS, []], metavar="SECTION",
                        help=f"any of {', '.join(SECTIONS)} (default: all but {', '.join(ON_REQUEST)}, in that order)")
    parser.add_argument("--smoke", action="store_true", help="tiny inputs and repeat counts (about 20 s)")
    parser.add_argument("--inputs", help="comma-separated input names (default: the set for the mode)")
    parser.add_argument("--scale-rows", help="comma-separated media row counts for `scale` (default 100000,1000000; "
                                             "--smoke 10000), e.g. 100000,1000000,10000000")
    args = parser.parse_args(argv)

    # Run from anywhere: the project root holds `bench`.
    root = Path(__file__).resolve().parents[1]
    os.chdir(root)
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))

    from bench.common import Config, console
    from bench.inputs import FULL, SMOKE, SPECS, make_inputs

    sections = args.sections or [name for name in SECTIONS if name not in ON_REQUEST]
    try:
        scale_rows = tuple(int(float(n)) for n in args.scale_rows.split(",")) if args.scale_rows else ()
    except ValueError:
        parser.error(f"--scale-rows takes comma-separated row counts, not {args.scale_rows!r}")
    names = tuple(args.inputs.split(",")) if args.inputs else (SMOKE if args.smoke else FULL)
    unknown = [n for n in names if n not in SPECS]
    if unknown:
        parser.error(f"unknown inputs {unknown}; known: {', '.join(SPECS)}")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mediahub-bench-") as tmp:
        work = Path(tmp)
        cfg = Config(smoke=args.smoke, work=work, scale_rows=scale_rows)
        console.print(f"MediaHub bench ({'smoke' if args.smoke else 'full'}): python {platform.python_version()}, "
                      f"{os.cpu_count()} cores, sections {', '.join(sections)}")
        if any(section not in NO_INPUTS for section in sections):
            cfg.inputs = make_inputs(names, work / "inputs")
            console.print("inputs: " + ", ".join(f"{n} {SPECS[n].width}x{SPECS[n].height} "
                                                 f"{p.stat().st_size // 1024} KiB" for n, p in cfg.inputs.items()))
        failed = []
        for section in sections:
            began = time.perf_counter()
            try:
                importlib.import_module(SECTIONS[section]).run(cfg)
            except Exception:  # report it, run the other sections, fail at the end
                failed.append(section)
                console.print_exception()
            console.print(f"({section}: {time.perf_counter() - began:.1f} s)\n", markup=False)
    console.print(f"bench done in {time.perf_counter() - started:.1f} s"
                  + (f"; FAILED sections: {', '.join(failed)}" if failed else ""), markup=False)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
