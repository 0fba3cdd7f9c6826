"""Child process of the `memory` section: one row, one input, in a fresh interpreter.

Imports everything every row needs and builds the runtime first, so that the
idle figure is a ready worker; then resets the peak (clear_refs 5) and runs
the row once. Prints one JSON line: idle RSS and the peak (VmHWM), in KiB.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _status(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def main(row: str, path: str, root: str) -> None:
    import gc

    import imagehash  # noqa: F401
    import numpy  # noqa: F401
    import pyvips  # noqa: F401

    from bench import naive
    from bench.harness import Bench, floor
    from mediahub.pipeline import image  # noqa: F401

    naive._register()
    bench = Bench.create(Path(root))
    sizes = bench.runtime.settings.image_sizes
    rows = {
        "naive": lambda p: naive.process(p),
        "upload": lambda p: bench.upload(p),
        "total": lambda p: bench.total(p),
        "floor": lambda p: floor(p, sizes),
    }
    gc.collect()
    idle = _status("VmRSS")
    reset = True
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
    except OSError:
        reset = False
    rows[row](Path(path))
    print(json.dumps({"idle_kib": idle, "peak_kib": _status("VmHWM"), "reset": reset}))
    bench.close()


if __name__ == "__main__":
    main(*sys.argv[1:4])
