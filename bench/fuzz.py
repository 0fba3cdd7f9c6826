"""`python -m bench.fuzz [--seconds 120]`: a long Hypothesis run over sniff, header and EXIF.

The CI form is tests/pipeline/test_bytes_fuzz.py (a few hundred examples). This runs the
same kind of mutations (bytes overwritten, cuts, junk appended, random bytes) for as long as
it is given, round after round with fresh seeds, over four targets:

  sniff    magic bytes -> type
  header   sniff -> lazy open -> pixel/frame limits (no decode)
  exif     the EXIF/GPS/orientation summary of whatever opened
  strip    the metadata strippers and the trailing-data judge

A target may only raise MediaHubError; anything else is a finding, printed with the input's
length and a hex prefix, and makes the exit status 1. (atheris is not installed here; this is
the Hypothesis equivalent.)
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import traceback
import warnings
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SEED_FILES = {
    "jpeg": "images/good/gps_nikon_DSCN0010.jpg",
    "jpeg-exif": "images/good/jpeg_orientation_6_empty_gps_ifd.jpg",
    "png": "images/good/png_hopper.png",
    "gif": "images/good/gif_hopper.gif",
    "webp": "images/good/webp_flower.webp",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fuzz", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=120.0, help="time budget (default 120)")
    parser.add_argument("--round", type=int, default=200, help="examples per target per round")
    args = parser.parse_args(argv)
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    warnings.filterwarnings("ignore", category=UserWarning, module="PIL")  # Pillow's notes on odd tags

    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from bench.corpus import CORPUS_DIR
    from mediahub.errors import MediaHubError
    from mediahub.pipeline.exif import read_exif
    from mediahub.pipeline.probe import ImageLimits, check_limits, open_image
    from mediahub.pipeline.sniff import sniff
    from mediahub.pipeline.strip import STRIPPERS, judge_trailing

    seeds = {}
    for name, rel in SEED_FILES.items():
        path = CORPUS_DIR / rel
        if path.is_file():
            seeds[name] = path.read_bytes()[:60000]
    if not seeds:
        print(f"no seed files under {CORPUS_DIR}")
        return 2
    limits = ImageLimits(10_000, 50_000_000, 100, 100_000_000)
    work = Path(tempfile.mkdtemp(prefix="mediahub-fuzz-"))
    blob_path = work / "blob"

    @st.composite
    def inputs(draw):
        if draw(st.integers(0, 9)) == 0:
            return draw(st.binary(max_size=2048))
        data = bytearray(seeds[draw(st.sampled_from(sorted(seeds)))])
        for _ in range(draw(st.integers(0, 16))):
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        if draw(st.booleans()):
            start = draw(st.integers(0, len(data) - 1))
            data[start:start + draw(st.integers(1, 64))] = draw(st.binary(max_size=64))
        if draw(st.booleans()):
            data = data[: draw(st.integers(1, len(data)))]
        return bytes(data) + draw(st.binary(max_size=64))

    runs: Counter[str] = Counter()
    expected: Counter[str] = Counter()
    findings: list[tuple[str, int, str, str]] = []

    def guarded(target: str, fn, blob: bytes):
        runs[target] += 1
        try:
            return fn()
        except MediaHubError as exc:
            expected[f"{target}:{exc.code}"] += 1
        except Exception as exc:  # a finding: a parser failure that escaped the MediaHubError contract
            findings.append((target, len(blob), blob[:24].hex(), "".join(traceback.format_exception_only(exc)).strip()))
        return None

    def one(blob: bytes) -> None:
        sniffed = guarded("sniff", lambda: sniff(blob[:4096]), blob)
        if sniffed is None or sniffed.media_kind != "image":
            return
        if sniffed.format in STRIPPERS:
            guarded("strip", lambda: judge_trailing(STRIPPERS[sniffed.format](blob), sniffed.format), blob)
        blob_path.write_bytes(blob)
        image = guarded("header", lambda: open_image(blob_path, sniffed.format), blob)
        if image is None:
            return
        try:
            guarded("header", lambda: check_limits(image, limits), blob)
            guarded("exif", lambda: read_exif(image), blob)
        finally:
            image.close()

    started = time.monotonic()
    rounds = 0
    while time.monotonic() - started < args.seconds:
        rounds += 1

        @settings(max_examples=args.round, deadline=None, database=None, derandomize=False,
                  suppress_health_check=list(HealthCheck))
        @given(inputs())
        def fuzz_round(blob: bytes) -> None:
            one(blob)

        fuzz_round()
    elapsed = time.monotonic() - started
    print(f"bench.fuzz: {rounds} rounds in {elapsed:.0f} s, seeds {', '.join(sorted(seeds))}")
    for target in ("sniff", "header", "exif", "strip"):
        codes = {k.split(":", 1)[1]: v for k, v in expected.items() if k.startswith(target + ":")}
        print(f"  {target:<7} {runs[target]:>7} inputs, refused: {dict(sorted(codes.items())) or '-'}")
    unique = {(t, m) for t, _, _, m in findings}
    print(f"  findings: {len(findings)} ({len(unique)} distinct)")
    for target, size, head, message in findings[:20]:
        print(f"    {target}: {size} bytes {head}...: {message}")
    os.rmdir(work) if not any(work.iterdir()) else blob_path.unlink(missing_ok=True)
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
