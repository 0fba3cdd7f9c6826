"""What the focal point adds to an upload: `focal.locate` (face search, else attention) on the whole-picture
render of about 400 px that the pipeline hands it, for the 12 MP bench inputs.

A plain script (no assertions): `.venv/bin/python bench/focal_point.py [ROUNDS]`. Wall time and the
process's CPU time per call, medians; the decode and the render are the pipeline's own work, not counted.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

from PIL import ImageOps

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.inputs import SPECS, make_input  # noqa: E402
from mediahub.config import Settings  # noqa: E402
from mediahub.pipeline.focal import locate  # noqa: E402
from mediahub.pipeline.image import hash_render  # noqa: E402
from mediahub.pipeline.probe import open_image  # noqa: E402
from mediahub.pipeline.sniff import sniff  # noqa: E402

INPUTS = ("jpeg-12mp", "jpeg-12mp-rot6", "heic-12mp")


def main(rounds: int) -> None:
    sizes = Settings(_env_file=None).image_sizes
    print(f"{'input':16} {'render':>9} {'source':>9} {'wall ms':>8} {'CPU ms':>7}  (medians of {rounds})")
    with tempfile.TemporaryDirectory() as folder:
        for name in INPUTS:
            path = make_input(SPECS[name], Path(folder))
            with open_image(path, sniff(path.read_bytes()[:4096]).format) as stored:
                render = hash_render(ImageOps.exif_transpose(stored).convert("RGB"), sizes)
            walls, cpus = [], []
            for _ in range(rounds):
                wall, cpu = time.perf_counter(), time.process_time()
                focus = locate(render)
                walls.append(time.perf_counter() - wall)
                cpus.append(time.process_time() - cpu)
            size = f"{render.width}x{render.height}"
            print(f"{name:16} {size:>9} {focus.point.source:>9} {statistics.median(walls) * 1000:8.1f} "
                  f"{statistics.median(cpus) * 1000:7.1f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 21)
