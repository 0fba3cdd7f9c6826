"""Step 4: open the header only and enforce pixel and frame limits before decoding.

Pillow is allowed only the plugin that matches the sniffed type, so a file can
never reach a decoder it was not sniffed as (no EPS/Ghostscript, no WMF).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image

from mediahub.errors import InvalidInput, LimitExceeded, UnsupportedType, library_reason
from mediahub.pipeline import vips as vips_step

if TYPE_CHECKING:
    import pyvips

_PILLOW_FORMATS = {
    "jpeg": ("JPEG", "MPO"),
    "png": ("PNG",),
    "gif": ("GIF",),
    "webp": ("WEBP",),
    "heif": ("HEIF",),
    "avif": ("AVIF",),
    "tiff": ("TIFF",),
    "bmp": ("BMP",),
    "ico": ("ICO",),
}
_heif_registered = False


@dataclass(frozen=True)
class ImageLimits:
    max_side: int
    max_pixels: int
    max_frames: int
    max_total_pixels: int
    max_jpeg_scans: int = 100  # see pipeline/structure.py


@dataclass(frozen=True)
class ImageHeader:
    width: int  # as stored, before orientation
    height: int
    frames: int
    animated: bool
    mode: str


def _register_plugins() -> None:
    global _heif_registered
    if not _heif_registered:
        import pillow_heif

        pillow_heif.register_heif_opener()
        # Pillow's own bomb check is a second line behind ours: as an error, never a warning.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        _heif_registered = True


def open_image(path: Path, fmt: str) -> Image.Image:
    """Open lazily (header only) with the one plugin that fits the sniffed type."""
    _register_plugins()
    try:
        return Image.open(path, formats=_PILLOW_FORMATS[fmt])
    except KeyError:
        raise UnsupportedType(f"{fmt} is not an image type") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise LimitExceeded(f"image is too large to decode safely: {library_reason(exc)}") from None
    except Exception as exc:  # untrusted bytes: any parser failure is a corrupt file
        raise InvalidInput(f"cannot read {fmt} header: {library_reason(exc)}", code="corrupt_image") from None


def check_size(width: int, height: int, limits: ImageLimits) -> None:
    if width < 1 or height < 1:
        raise InvalidInput(f"image declares an empty size {width}x{height}", code="corrupt_image")
    if max(width, height) > limits.max_side:
        raise LimitExceeded(f"image is {width}x{height}; at most {limits.max_side} px a side")
    if width * height > limits.max_pixels:
        raise LimitExceeded(f"image has {width * height} pixels; at most {limits.max_pixels}")


def _walk_frames(image: Image.Image, frames: int, limits: ImageLimits) -> None:
    """Seek every frame so that frame extents beyond the canvas (GIF bombs) are caught."""
    for index in range(frames):
        image.seek(index)
        check_size(*image.size, limits)
    image.seek(0)


def check_limits(image: Image.Image, limits: ImageLimits) -> ImageHeader:
    """Refuse oversized images from header fields alone, before any pixel is decoded."""
    width, height = image.size
    check_size(width, height, limits)
    try:
        frames = int(getattr(image, "n_frames", 1) or 1)
        if frames > limits.max_frames:
            raise LimitExceeded(f"image has {frames} frames; at most {limits.max_frames}", code="too_many_frames")
        if frames * width * height > limits.max_total_pixels:
            raise LimitExceeded(f"{frames} frames of {width}x{height} exceed {limits.max_total_pixels} pixels in all")
        if frames > 1:
            _walk_frames(image, frames, limits)
    except (InvalidInput, LimitExceeded):
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise LimitExceeded(f"a frame is too large to decode safely: {library_reason(exc)}") from None
    except Exception as exc:
        raise InvalidInput(f"cannot read frames: {library_reason(exc)}", code="corrupt_image") from None
    return ImageHeader(width, height, frames, frames > 1, image.mode)


def decode(image: Image.Image, reduce_to: tuple[int, int] | None = None) -> Image.Image:
    """Decode the first frame; JPEGs at the smallest DCT scale still >= reduce_to."""
    try:
        image.seek(0)
        if reduce_to is not None and image.format in ("JPEG", "MPO"):
            image.draft(image.mode if image.mode in ("RGB", "L", "CMYK") else "RGB", reduce_to)
        image.load()
        return image
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise LimitExceeded(f"image is too large to decode safely: {library_reason(exc)}") from None
    except MemoryError:
        raise LimitExceeded("image needs more memory than allowed to decode") from None
    except Exception as exc:
        raise InvalidInput(f"image data is corrupt: {library_reason(exc)}", code="corrupt_image") from None


# -- libvips fast path: JPEG decoded straight to the size the variants need ------------------------


def _refuse_truncation(error: Exception) -> None:
    """Raise truncated_image when libjpeg ran out of data; its other complaints are left to Pillow."""
    # libjpeg: "premature end of data segment" (a forged end marker mid-scan), "Premature end of
    # JPEG file"; libvips: "premature end of JPEG image". Both decoders fill the rest with grey.
    if "premature end" in str(error).lower():
        raise InvalidInput("the JPEG's image data is cut short", code="truncated_image") from None


def check_jpeg_data(path: Path) -> None:
    """Refuse a JPEG whose entropy-coded data ends early, which Pillow decodes to grey without a word.

    One libvips decode at the smallest DCT scale: libjpeg still reads every scan to the
    end, and reports running out of data as a warning, which fails the load here.
    """
    try:
        vips = vips_step.module()
        head = vips.Image.new_from_file(str(path), access="sequential")
        shrink = 8
        while shrink > 1 and min(head.width, head.height) < shrink:
            shrink //= 2
        vips.Image.new_from_file(str(path), access="sequential", fail_on="warning", shrink=shrink).avg()
    except InvalidInput:
        raise
    except Exception as exc:  # noqa: BLE001 - anything but truncation is Pillow's to judge
        _refuse_truncation(exc)


def load_png(path: Path, image: Image.Image) -> Image.Image | None:
    """An 8-bit grey, RGB or RGBA PNG decoded by libvips (libspng inflates and unfilters in about half
    Pillow's time), as the Pillow image Pillow's own decode gives: same mode, pixels and info. None for
    anything else, or on any libvips complaint: Pillow decodes it, and its errors are the ones users see.
    """
    if image.format != "PNG" or image.mode not in ("L", "RGB", "RGBA") or "transparency" in image.info:
        return None
    if getattr(image, "n_frames", 1) > 1:
        return None
    try:
        loaded = vips_step.module().Image.new_from_file(str(path), access="sequential", fail_on="warning")
        if loaded.format != "uchar" or loaded.bands != len(image.getbands()) or (loaded.width, loaded.height) != image.size:
            return None
        pixels = Image.frombytes(image.mode, image.size, loaded.write_to_memory())
    except Exception:  # noqa: BLE001 - any libvips failure means "use Pillow"
        return None
    pixels.info = dict(image.info)
    return pixels


def reduce_jpeg(path: Path, box: tuple[int, int]) -> pyvips.Image | None:
    """The JPEG's first frame at exactly `box` (stored orientation), in memory in libvips, or None.

    libjpeg's DCT scaling (shrink-on-load, at most 8x and never below `box`) and
    then a Lanczos-3 reduce to the exact size: no full-size decode, ever. None
    when libvips cannot do it (odd colour space, any libjpeg warning or error):
    the caller falls back to Pillow, whose errors are the ones users see; only
    image data cut short is refused here (truncated_image). Its metadata is never
    read again: pixels leave libvips as raw bytes, and the ICC profile is the
    caller's to apply.
    """
    try:
        vips = vips_step.module()
        head = vips.Image.new_from_file(str(path), access="sequential", fail_on="warning")
        shrink = 1
        while shrink < 8 and head.width // (shrink * 2) >= box[0] and head.height // (shrink * 2) >= box[1]:
            shrink *= 2
        loaded = vips.Image.new_from_file(str(path), access="sequential", fail_on="warning", shrink=shrink)
        if loaded.interpretation not in ("srgb", "b-w") or loaded.format != "uchar" or loaded.bands not in (1, 3):
            return None
        return vips_step.resize(loaded, box).copy_memory()
    except Exception as exc:  # noqa: BLE001 - any other libvips failure means "use Pillow"
        _refuse_truncation(exc)
        return None
