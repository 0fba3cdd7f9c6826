"""Deterministic bench inputs made from the corpus' real photos.

Camera-like files: real photos resized to 2, 12 and 24 MP with seeded grain so
they compress like camera output (flat upscales would flatter every decoder),
EXIF with camera fields and GPS; one stored sideways as an iPhone stores it
(4032x3024 pixels, orientation 6, the iPhone's own EXIF block with its maker
note and thumbnail), photographic PNGs with a real alpha channel, and the
corpus' iPhone HEIC as it is.
"""

from __future__ import annotations

import shutil
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from bench.corpus import CORPUS_DIR

GOOD = CORPUS_DIR / "images" / "good"
GRAIN_SIGMA = 5.0


@dataclass(frozen=True)
class InputSpec:
    name: str
    source: str  # corpus file under images/good
    width: int  # as displayed (upright)
    height: int
    fmt: str = "jpeg"  # jpeg | png | heic
    orientation: int = 1
    seed: int = 0
    source_exif: bool = False  # the source photo's own EXIF block (a phone's), orientation and size set

    @property
    def megapixels(self) -> float:
        return self.width * self.height / 1e6


SPECS: dict[str, InputSpec] = {s.name: s for s in (
    InputSpec("jpeg-2mp", "orient_landscape_1.jpg", 1732, 1155, seed=2),
    InputSpec("jpeg-1mp-rot6", "orient_landscape_1.jpg", 816, 1224, orientation=6, seed=4),
    InputSpec("jpeg-12mp", "jpeg_large_jolla_3264x2448.jpg", 4000, 3000, seed=12),
    InputSpec("jpeg-12mp-rot6", "gps_iphone6_hdr_3264x2448.jpg", 3024, 4032, orientation=6, seed=13,
              source_exif=True),
    InputSpec("jpeg-24mp", "jpeg_large_jolla_3264x2448.jpg", 6000, 4000, seed=24),
    InputSpec("png-alpha-1.3mp", "gps_iphone6_hdr_3264x2448.jpg", 1400, 933, fmt="png", seed=6),
    InputSpec("png-alpha-2mp", "gps_iphone6_hdr_3264x2448.jpg", 1732, 1155, fmt="png", seed=3),
    InputSpec("png-alpha-0.5mp", "gps_iphone6_hdr_3264x2448.jpg", 866, 577, fmt="png", seed=5),
    InputSpec("heic-12mp", "heic_iphone13_3024x4032.heic", 3024, 4032, fmt="heic"),
)}
FULL = ("jpeg-2mp", "jpeg-12mp", "jpeg-12mp-rot6", "jpeg-24mp", "png-alpha-1.3mp", "png-alpha-2mp", "heic-12mp")
SMOKE = ("jpeg-1mp-rot6", "png-alpha-0.5mp")


def _cover(image: Image.Image, width: int, height: int) -> Image.Image:
    """Scale to cover width x height and crop the centre (an upscale for the large sizes)."""
    scale = max(width / image.width, height / image.height)
    size = (max(width, round(image.width * scale)), max(height, round(image.height * scale)))
    image = image.resize(size, Image.Resampling.LANCZOS)
    left, top = (size[0] - width) // 2, (size[1] - height) // 2
    return image.crop((left, top, left + width, top + height))


def _grain(image: Image.Image, seed: int) -> Image.Image:
    """Add seeded luma + chroma noise, row block by row block to bound memory."""
    rng = np.random.default_rng(seed)
    pixels = np.asarray(image.convert("RGB")).copy()
    for top in range(0, pixels.shape[0], 256):
        block = pixels[top:top + 256].astype(np.int16)
        luma = rng.normal(0.0, GRAIN_SIGMA, block.shape[:2]).astype(np.float32)
        chroma = rng.normal(0.0, GRAIN_SIGMA / 2, block.shape).astype(np.float32)
        block += (luma[..., None] + chroma).astype(np.int16)
        pixels[top:top + 256] = np.clip(block, 0, 255).astype(np.uint8)
    return Image.fromarray(pixels, "RGB")


def _exif(orientation: int) -> Image.Exif:
    exif = Image.Exif()
    exif[0x010F] = "BenchCam"
    exif[0x0110] = "Model 12"
    exif[0x0132] = "2024:05:01 12:00:00"
    exif[0x0112] = orientation
    gps = exif.get_ifd(0x8825)
    gps.update({1: "N", 2: (52.0, 31.0, 12.5), 3: "E", 4: (13.0, 24.0, 36.0)})
    return exif


def _patched_exif(raw: bytes, orientation: int, width: int, height: int) -> bytes:
    """A camera's EXIF block as it is (maker note, thumbnail, GPS), with the orientation and the stored
    pixel size written in place: Pillow's own writer would drop the thumbnail."""
    data = bytearray(raw)
    base = 6  # after b"Exif\0\0"
    order = ">" if data[base:base + 2] == b"MM" else "<"

    def entries(ifd: int):
        count = struct.unpack_from(order + "H", data, base + ifd)[0]
        for index in range(count):
            at = base + ifd + 2 + 12 * index
            tag, kind = struct.unpack_from(order + "HH", data, at)
            yield tag, kind, at + 8

    def put(at: int, kind: int, value: int) -> None:
        struct.pack_into(order + ("H" if kind == 3 else "I"), data, at, value)

    first = struct.unpack_from(order + "I", data, base + 4)[0]
    for tag, kind, at in entries(first):
        if tag == 0x0112:
            put(at, kind, orientation)
        elif tag == 0x8769:
            for inner, inner_kind, inner_at in entries(struct.unpack_from(order + "I", data, at)[0]):
                if inner in (0xA002, 0xA003):
                    put(inner_at, inner_kind, width if inner == 0xA002 else height)
    return bytes(data)


def _alpha(width: int, height: int) -> Image.Image:
    """A soft vignette alpha: opaque centre, transparent corners (real, varied alpha)."""
    y, x = np.ogrid[-1:1:height * 1j, -1:1:width * 1j]
    radius = np.sqrt(x * x + y * y)
    return Image.fromarray((np.clip(1.6 - radius, 0, 1) * 255).astype(np.uint8), "L")


def make_input(spec: InputSpec, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    source = GOOD / spec.source
    if spec.fmt == "heic":
        target = folder / f"{spec.name}.heic"
        shutil.copyfile(source, target)  # a temp copy for this run, never into the project
        return target
    with Image.open(source) as img:
        from PIL import ImageOps

        upright = ImageOps.exif_transpose(img).convert("RGB")
        source_exif = img.info.get("exif", b"")
    picture = _grain(_cover(upright, spec.width, spec.height), spec.seed)
    if spec.fmt == "png":
        picture.putalpha(_alpha(*picture.size))
        target = folder / f"{spec.name}.png"
        picture.save(target, "PNG", compress_level=6)
        return target
    if spec.orientation == 6:  # stored sideways: the viewer turns it 90 degrees clockwise
        picture = picture.transpose(Image.Transpose.ROTATE_90)
    target = folder / f"{spec.name}.jpg"
    exif = (_patched_exif(source_exif, spec.orientation, *picture.size) if spec.source_exif
            else _exif(spec.orientation))
    picture.save(target, "JPEG", quality=92, subsampling=2, exif=exif)
    return target


def make_inputs(names: tuple[str, ...], folder: Path) -> dict[str, Path]:
    return {name: make_input(SPECS[name], folder) for name in names}
