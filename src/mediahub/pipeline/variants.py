"""Step 7: resized renditions, each made from the smallest larger one already made.

Resizing every size from the full image costs most of a naive pipeline's time;
here the largest size comes from the (already reduced) decode and each smaller
one from the previous, and nothing is ever upscaled. Renders are libvips
images (Lanczos-3, `pipeline/vips.py` says why); JPEGs and PNGs are encoded by
libvips straight from them, WebP and AVIF by Pillow (faster than libvips for WebP,
no slower for AVIF), from one Pillow copy a render.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from PIL import Image

from mediahub.config import VariantSpec, Watermark
from mediahub.formats import CONTENT_TYPES
from mediahub.pipeline import background
from mediahub.pipeline import vips as vips_step
from mediahub.pipeline import watermark as watermark_step

if TYPE_CHECKING:
    import pyvips


@dataclass(frozen=True)
class Encoded:
    name: str
    format: str
    width: int
    height: int
    data: bytes
    crop: bool = False  # a crop around the focal point: not the whole picture at a smaller size
    watermarked: bool = False  # other pixels than the unmarked sizes and the original: shares no object with them

    @property
    def content_type(self) -> str:
        return CONTENT_TYPES[self.format]


@dataclass(frozen=True)
class EncodeOptions:
    jpeg_quality: int
    webp_quality: int
    webp: bool
    avif: bool = False
    avif_quality: int = 60
    base: bool = True  # the JPEG (PNG with alpha) every client can show; off when only adding WebP/AVIF

    def formats(self, image: pyvips.Image) -> list[str]:
        base = ["png" if image.bands == 4 else "jpeg"] if self.base else []
        return base + [fmt for fmt, wanted in (("webp", self.webp), ("avif", self.avif)) if wanted]


def fit_size(width: int, height: int, box_w: int, box_h: int) -> tuple[int, int]:
    """Largest size with the same aspect inside the box, never above the source."""
    scale = min(1.0, box_w / width, box_h / height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def crop_box(width: int, height: int, aspect: float,
             focal: tuple[float, float] = (0.5, 0.5)) -> tuple[float, float, float, float]:
    """The largest region of the given aspect (w/h), centred on `focal` (x, y as fractions of the
    picture) as far as the edges allow: (left, top, right, bottom)."""
    if width / height > aspect:
        crop_w = height * aspect
        left = min(max(0.0, focal[0] * width - crop_w / 2), width - crop_w)
        return (left, 0.0, left + crop_w, float(height))
    crop_h = width / aspect
    top = min(max(0.0, focal[1] * height - crop_h / 2), height - crop_h)
    return (0.0, top, float(width), top + crop_h)


def output_size(width: int, height: int, spec: VariantSpec) -> tuple[int, int]:
    """The size a spec gives for a source of width x height (exact, whatever the source)."""
    if not spec.crop:
        return fit_size(width, height, spec.width, spec.height)
    left, top, right, bottom = crop_box(width, height, spec.width / spec.height)
    return fit_size(max(1, round(right - left)), max(1, round(bottom - top)), spec.width, spec.height)


def _render(source: pyvips.Image, size: tuple[int, int], spec: VariantSpec,
            focal: tuple[float, float]) -> pyvips.Image:
    box = None
    if spec.crop:
        left, top, right, bottom = crop_box(source.width, source.height, spec.width / spec.height, focal)
        x, y = min(source.width - 1, round(left)), min(source.height - 1, round(top))
        box = (x, y, max(1, min(source.width - x, round(right - left))),
               max(1, min(source.height - y, round(bottom - top))))
    return vips_step.resize(source, size, box).copy_memory()  # in memory: smaller renders read it again


def _adequate(source: pyvips.Image, size: tuple[int, int], spec: VariantSpec) -> bool:
    """Whether `source` holds at least as many pixels as the rendition needs."""
    if spec.crop:
        left, top, right, bottom = crop_box(source.width, source.height, spec.width / spec.height)
        return right - left >= size[0] and bottom - top >= size[1]
    return source.width >= size[0] and source.height >= size[1]


def source_box(width: int, height: int, specs: tuple[VariantSpec, ...]) -> tuple[int, int]:
    """The smallest whole-picture size (same aspect) every spec can be rendered from without upscaling.

    Usually the largest fit spec's exact output size, so that rendition needs no resize at all.
    """
    fits = [output_size(width, height, s) for s in specs if not s.crop]
    if fits:
        box = max(fits, key=lambda size: size[0] * size[1])
        if all(box[0] >= w and box[1] >= h for w, h in fits) and all(
                _crop_fits(box, output_size(width, height, s), s) for s in specs if s.crop):
            return box
    scale = 0.0
    for spec in specs:
        out_w, out_h = output_size(width, height, spec)
        left, top, right, bottom = crop_box(width, height, spec.width / spec.height) if spec.crop else (
            0, 0, width, height)
        scale = max(scale, out_w / (right - left), out_h / (bottom - top))
    return min(width, math.ceil(width * scale - 1e-9)), min(height, math.ceil(height * scale - 1e-9))


def _crop_fits(box: tuple[int, int], size: tuple[int, int], spec: VariantSpec) -> bool:
    left, top, right, bottom = crop_box(*box, spec.width / spec.height)
    return right - left >= size[0] and bottom - top >= size[1]


def render_all(base: Image.Image | pyvips.Image, specs: tuple[VariantSpec, ...],
               full_size: tuple[int, int] | None = None, focal: tuple[float, float] = (0.5, 0.5),
               earlier: Iterable[pyvips.Image] = ()) -> dict[str, pyvips.Image]:
    """Every spec rendered, largest first, each from the smallest adequate earlier render.

    `base` is an 8-bit L/RGB/RGBA display image, Pillow or libvips. `full_size` is
    the picture's real (upright) size when `base` is a reduced decode of it: output
    sizes are always those of the full picture (`output_size`), never of the reduction.
    Crops are centred on `focal` (`crop_box`). `earlier`: whole-picture renders of `base`
    made already, which may serve as sources too.
    """
    source = base if vips_step.is_vips(base) else vips_step.from_pillow(base)
    made: dict[str, pyvips.Image] = {}
    sources = list(earlier)  # whole-picture renders only: a crop cannot feed another size
    for spec in sorted(specs, key=lambda s: s.width * s.height, reverse=True):
        size = output_size(*(full_size or (source.width, source.height)), spec)
        candidates = [img for img in sources if _adequate(img, size, spec)]
        chosen = min(candidates, key=lambda img: img.width * img.height, default=source)
        made[spec.name] = _render(chosen, size, spec, focal)
        if not spec.crop:
            sources.append(made[spec.name])
    return made


def encode(image: pyvips.Image, fmt: str, options: EncodeOptions, pillow: Image.Image | None = None) -> bytes:
    """One render in one format; `pillow`: the render already converted, for the Pillow encoders."""
    if fmt == "jpeg":
        # libvips from its own pixels: cheaper than a Pillow copy plus a Pillow encode.
        return image.jpegsave_buffer(Q=options.jpeg_quality, keep="none", optimize_coding=False, interlace=False)
    if fmt == "png":
        # libvips, level 2 with the "sub" filter on every row: about as small as Pillow's level 1 (which tries
        # every filter on every row) in a little over half the time on photographic pictures with alpha.
        return image.pngsave_buffer(compression=2, filter="sub", keep="none")
    if pillow is None:
        pillow = vips_step.to_pillow(image)
    out = io.BytesIO()
    if fmt == "webp":
        # Method 0: the slower methods make barely smaller files for much more time.
        pillow.save(out, "WEBP", quality=options.webp_quality, method=0)
    elif fmt == "avif":
        # Speed 10: the slower speeds take several times as long for no smaller file.
        pillow.save(out, "AVIF", quality=options.avif_quality, speed=10)
    else:
        raise ValueError(f"cannot encode variants as {fmt}")
    return out.getvalue()


def _encode_render(image: pyvips.Image, formats: list[str], options: EncodeOptions,
                   watermark: Watermark | None) -> list[bytes]:
    if watermark is not None:  # composed here, on the encoded copy, so it reaches no other render
        image = watermark_step.apply(image, watermark).copy_memory()  # read once per format
    pillow = vips_step.to_pillow(image) if any(fmt not in ("jpeg", "png") for fmt in formats) else None
    return [encode(image, fmt, options, pillow) for fmt in formats]


def encode_all(renders: dict[str, pyvips.Image], specs: tuple[VariantSpec, ...],
               options: EncodeOptions, watermark: Watermark | None = None) -> list[Encoded]:
    """JPEG (PNG where there is alpha) for every render (of `specs`), plus WebP and AVIF when enabled.

    The renders `watermark` applies to are encoded marked, every format of them; the renders
    themselves stay unmarked. The renders are encoded side by side (libvips and Pillow release the GIL).
    """
    marked = {name for name, image in renders.items() if watermark_step.applies(watermark, image.width, name)}
    pending = [(name, image, formats, background.submit(_encode_render, image, formats, options,
                                                        watermark if name in marked else None))
               for name, image in renders.items() if (formats := options.formats(image))]
    cropped = {spec.name for spec in specs if spec.crop}
    return [Encoded(name, fmt, image.width, image.height, data, name in cropped, name in marked)
            for name, image, formats, future in pending for fmt, data in zip(formats, future.result(), strict=True)]
