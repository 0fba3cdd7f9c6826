"""Step 8: resized renditions, each made from the smallest larger one already made.

Resizing every size from the full image costs most of a naive pipeline's time;
here the largest size comes from the (already reduced) decode and each smaller
one from the previous, and nothing is ever upscaled.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image

from mediahub.config import VariantSpec

_RESAMPLE = Image.Resampling.LANCZOS
CONTENT_TYPES = {"jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp", "gif": "image/gif"}
EXTENSIONS = {"jpeg": "jpg", "png": "png", "webp": "webp", "gif": "gif"}


@dataclass(frozen=True)
class Encoded:
    name: str
    format: str
    width: int
    height: int
    data: bytes

    @property
    def content_type(self) -> str:
        return CONTENT_TYPES[self.format]


@dataclass(frozen=True)
class EncodeOptions:
    jpeg_quality: int
    webp_quality: int
    webp: bool


def fit_size(width: int, height: int, box_w: int, box_h: int) -> tuple[int, int]:
    """Largest size with the same aspect inside the box, never above the source."""
    scale = min(1.0, box_w / width, box_h / height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def crop_box(width: int, height: int, aspect: float) -> tuple[float, float, float, float]:
    """The centred region of the given aspect (w/h)."""
    if width / height > aspect:
        crop_w = height * aspect
        left = (width - crop_w) / 2
        return (left, 0.0, left + crop_w, float(height))
    crop_h = width / aspect
    top = (height - crop_h) / 2
    return (0.0, top, float(width), top + crop_h)


def output_size(width: int, height: int, spec: VariantSpec) -> tuple[int, int]:
    """The size a spec gives for a source of width x height (exact, whatever the source)."""
    if not spec.crop:
        return fit_size(width, height, spec.width, spec.height)
    left, top, right, bottom = crop_box(width, height, spec.width / spec.height)
    return fit_size(max(1, round(right - left)), max(1, round(bottom - top)), spec.width, spec.height)


def _render(source: Image.Image, size: tuple[int, int], spec: VariantSpec) -> Image.Image:
    if not spec.crop:
        return source if size == source.size else source.resize(size, _RESAMPLE, reducing_gap=3.0)
    box = crop_box(*source.size, spec.width / spec.height)
    return source.resize(size, _RESAMPLE, box=box, reducing_gap=3.0)


def _adequate(source: Image.Image, size: tuple[int, int], spec: VariantSpec) -> bool:
    """Whether `source` holds at least as many pixels as the rendition needs."""
    if spec.crop:
        left, top, right, bottom = crop_box(*source.size, spec.width / spec.height)
        return right - left >= size[0] and bottom - top >= size[1]
    return source.size[0] >= size[0] and source.size[1] >= size[1]


def render_all(base: Image.Image, specs: tuple[VariantSpec, ...]) -> dict[str, Image.Image]:
    """Every spec rendered, largest first, each from the smallest adequate earlier render."""
    made: dict[str, Image.Image] = {}
    sources: list[Image.Image] = []  # whole-picture renders only: a crop cannot feed another size
    for spec in sorted(specs, key=lambda s: s.width * s.height, reverse=True):
        size = output_size(*base.size, spec)
        candidates = [img for img in sources if _adequate(img, size, spec)]
        source = min(candidates, key=lambda img: img.size[0] * img.size[1], default=base)
        made[spec.name] = _render(source, size, spec)
        if not spec.crop:
            sources.append(made[spec.name])
    return made


def encode(image: Image.Image, fmt: str, options: EncodeOptions) -> bytes:
    out = io.BytesIO()
    if fmt == "jpeg":
        image.save(out, "JPEG", quality=options.jpeg_quality, optimize=False, progressive=False)
    elif fmt == "png":
        image.save(out, "PNG", compress_level=6)
    elif fmt == "webp":
        image.save(out, "WEBP", quality=options.webp_quality, method=2)
    else:
        raise ValueError(f"cannot encode variants as {fmt}")
    return out.getvalue()


def encode_all(renders: dict[str, Image.Image], options: EncodeOptions) -> list[Encoded]:
    """JPEG (PNG where there is alpha) for every render, plus WebP when enabled."""
    encoded = []
    for name, image in renders.items():
        formats = ["png" if image.mode == "RGBA" else "jpeg"] + (["webp"] if options.webp else [])
        for fmt in formats:
            encoded.append(Encoded(name, fmt, image.size[0], image.size[1], encode(image, fmt, options)))
    return encoded
