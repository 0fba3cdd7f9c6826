"""Time to poster for each corpus video: probe, truncation check, poster decode, variants and pHash.

A plain script (no assertions): `.venv/bin/python bench/video_poster.py [ROUNDS]`. It times
`process_video`, which is all the upload path does for a video before storing it; the
WebP renditions and the web transcode run later as jobs and are timed separately.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

from mediahub.config import Settings
from mediahub.pipeline.options import encode_options, image_options, video_options
from mediahub.pipeline.sniff import sniff
from mediahub.pipeline.transcode import transcode_web
from mediahub.pipeline.video import process_video

CORPUS = Path(__file__).resolve().parents[1] / ".." / "shared" / "corpus" / "video"


def main(rounds: int) -> None:
    settings = Settings(_env_file=None)
    options = video_options(settings, image_options(settings, encode_options(settings, extra=False)))
    print(f"{'video':45} {'poster ms (median of ' + str(rounds) + ')':>26} {'web transcode s':>16}")
    with tempfile.TemporaryDirectory() as folder:
        for path in sorted(CORPUS.glob("*")):
            if not path.name.startswith("bad_"):
                _measure(path, options, rounds, Path(folder) / "web.mp4")


def _measure(path: Path, options, rounds: int, web: Path) -> None:
    sniffed = sniff(path.read_bytes()[:4096])
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        process_video(path, sniffed, options)
        times.append(time.perf_counter() - started)
    started = time.perf_counter()
    transcode_web(path, web)
    transcode = time.perf_counter() - started
    print(f"{path.name:45} {statistics.median(times) * 1000:26.1f} {transcode:16.2f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
