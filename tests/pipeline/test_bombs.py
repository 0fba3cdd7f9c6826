"""Pixel, frame and chunk bombs are refused from their headers, in bounded memory.

The bombs run in a fresh subprocess that reports its own peak RSS (VmHWM), so
the figure is this pipeline's and not the test runner's.
"""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
import zlib

import pytest
from PIL import Image

from tests.support.corpus import CORPUS_DIR

CORPUS_BOMBS = ["decompression_bomb.gif", "decompression_bomb.ico", "decompression_bomb_extents.gif",
                "png_text_chunk_bomb.png"]
PEAK_RSS_ALLOWANCE_MB = 120  # one 12 MP RGB frame is ~36 MB; a decoded 81 MP bomb would be ~240 MB


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_claiming(width: int, height: int) -> bytes:
    """A valid PNG header for a huge image whose pixel data is all zeros (compresses to nothing)."""
    row = b"\x00" + b"\x00" * (width * 3)
    compressor = zlib.compressobj(9)
    body = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", body) + _png_chunk(b"IEND", b"")


def jpeg_claiming(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (16, 16)).save(out, "JPEG")
    data = bytearray(out.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def gif_with_frames(count: int) -> bytes:
    frames = []
    for index in range(count):  # each frame differs, or Pillow merges them into one
        frame = Image.new("L", (64, 64), 0)
        frame.putpixel((index % 64, index // 64), 255)
        frames.append(frame)
    out = io.BytesIO()
    frames[0].save(out, "GIF", save_all=True, append_images=frames[1:])
    return out.getvalue()


def jpeg_with_huge_exif() -> bytes:
    out = io.BytesIO()
    exif = Image.Exif()
    exif[0x010E] = "x" * 60000  # ImageDescription: an APP1 segment near its 64 KiB maximum
    Image.new("RGB", (32, 32)).save(out, "JPEG", exif=exif.tobytes())
    return out.getvalue()


CRAFTED = {
    "png_9000x9000.png": (lambda: png_claiming(9000, 9000), "too_many_pixels"),
    "png_30000x10.png": (lambda: png_claiming(30000, 10), "too_many_pixels"),
    "jpeg_60000x60000.jpg": (lambda: jpeg_claiming(60000, 60000), "too_many_pixels"),
    "gif_150_frames.gif": (lambda: gif_with_frames(150), "too_many_frames"),
}

PROBE = r"""
import json, sys
from pathlib import Path
from mediahub.config import Settings
from mediahub.errors import MediaHubError
from mediahub.pipeline.image import process_image
from mediahub.pipeline.sniff import sniff
from mediahub.pipeline.options import image_options

def peak_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024

options = image_options(Settings(_env_file=None))
baseline = peak_mb()
codes = {}
for name in sys.argv[1:]:
    path = Path(name)
    try:
        process_image(path, sniff(path.read_bytes()[:4096]), options)
        codes[path.name] = "accepted"
    except MediaHubError as exc:
        codes[path.name] = exc.code
print(json.dumps({"codes": codes, "baseline_mb": baseline, "peak_mb": peak_mb()}))
"""


@pytest.fixture(scope="module")
def bomb_run(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("bombs")
    paths = [str(CORPUS_DIR / "images/bad" / name) for name in CORPUS_BOMBS]
    for name, (make, _) in CRAFTED.items():
        (folder / name).write_bytes(make())
        paths.append(str(folder / name))
    huge_exif = folder / "jpeg_huge_exif.jpg"
    huge_exif.write_bytes(jpeg_with_huge_exif())
    paths.append(str(huge_exif))
    result = subprocess.run([sys.executable, "-c", PROBE, *paths], capture_output=True, text=True, timeout=120,
                            check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("name", CORPUS_BOMBS)
def test_corpus_bombs_are_refused(bomb_run, name):
    assert bomb_run["codes"][name] in {"too_many_pixels", "too_many_frames", "corrupt_image"}


@pytest.mark.parametrize("name", sorted(CRAFTED))
def test_crafted_bombs_are_refused_with_their_code(bomb_run, name):
    assert bomb_run["codes"][name] == CRAFTED[name][1]


def test_huge_exif_is_read_without_harm(bomb_run):
    assert bomb_run["codes"]["jpeg_huge_exif.jpg"] == "accepted"


def test_peak_memory_stays_bounded(bomb_run):
    grown = bomb_run["peak_mb"] - bomb_run["baseline_mb"]
    assert grown < PEAK_RSS_ALLOWANCE_MB, f"peak RSS grew {grown:.0f} MB while refusing bombs"


def test_crafted_bombs_really_declare_what_they_claim():
    """Guard the guard: a crafted bomb that opens small would prove nothing."""
    with Image.open(io.BytesIO(png_claiming(9000, 9000))) as image:
        assert image.size == (9000, 9000)
    with Image.open(io.BytesIO(gif_with_frames(150))) as image:
        assert image.n_frames == 150
