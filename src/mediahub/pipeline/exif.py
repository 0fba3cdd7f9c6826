"""Step 5: read EXIF into a small JSON-safe summary, and the orientation to apply.

Camera files carry broken values often enough (zero denominators, wrong types,
truncated IFDs) that every field is read defensively: a bad field is left out,
never an error.
"""

from __future__ import annotations

import math
import re
import struct
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

_IFD_EXIF = 0x8769
_IFD_GPS = 0x8825
_ORIENTATION = 0x0112

_BASE_TAGS = {0x010F: "make", 0x0110: "model", 0x0131: "software", 0x0132: "modified_at"}
_EXIF_TAGS = {
    0xA434: "lens",
    0x829A: "exposure_time",
    0x829D: "f_number",
    0x8827: "iso",
    0x920A: "focal_length",
    0x9003: "taken_at",
    0xA002: "pixel_width",
    0xA003: "pixel_height",
}
_XMP_ORIENTATION_RE = re.compile(rb"""tiff:Orientation(?:="|>)\s*(\d)""")


@dataclass
class ExifSummary:
    camera: dict[str, Any] = field(default_factory=dict)
    gps: dict[str, float] | None = None  # valid coordinates only
    has_gps_tags: bool = False  # any location tag, valid or not: it must not be served
    orientation: int = 1
    has_exif: bool = False


def _plain(value: Any) -> Any:
    """A JSON-safe scalar, or None when the value is junk."""
    if isinstance(value, bytes):
        value = value.split(b"\x00", 1)[0].decode("utf-8", "replace")
    if isinstance(value, str):
        text = value.strip("\x00 ").strip()
        return text[:200] or None
    if isinstance(value, (tuple, list)):
        return _plain(value[0]) if len(value) == 1 else None
    try:
        number = float(value)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    if not math.isfinite(number):
        return None
    return int(number) if number.is_integer() else round(number, 6)


def _degrees(dms: Any, ref: Any) -> float | None:
    try:
        deg, minutes, seconds = (float(x) for x in dms)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    value = deg + minutes / 60 + seconds / 3600
    if isinstance(ref, bytes):
        ref = ref.decode("latin-1", "replace")
    if str(ref).strip("\x00 ").upper() in {"S", "W"}:
        value = -value
    return round(value, 7) if math.isfinite(value) else None


def _gps_ifd(exif: Image.Exif) -> dict:
    try:
        return dict(exif.get_ifd(_IFD_GPS))
    except Exception:  # a broken GPS IFD holds no usable GPS
        return {}


def _gps(ifd: dict) -> dict[str, float] | None:
    lat = _degrees(ifd.get(2), ifd.get(1))
    lon = _degrees(ifd.get(4), ifd.get(3))
    if lat is None or lon is None or not (-90 <= lat <= 90 and -180 <= lon <= 180):
        return None
    gps = {"latitude": lat, "longitude": lon}
    altitude = _plain(ifd.get(6))
    if isinstance(altitude, (int, float)):
        gps["altitude"] = -altitude if ifd.get(5) in (1, b"\x01") else altitude
    return gps


def _orientation(image: Image.Image, exif: Image.Exif) -> int:
    value = exif.get(_ORIENTATION)
    if value is None:
        xmp = image.info.get("xmp") or image.info.get("XML:com.adobe.xmp")
        if isinstance(xmp, str):
            xmp = xmp.encode()
        match = _XMP_ORIENTATION_RE.search(xmp) if isinstance(xmp, bytes) else None
        value = int(match.group(1)) if match else 1
    try:
        value = int(value)
    except (TypeError, ValueError):
        return 1
    # 0 and out-of-range values are common junk; they mean "as stored".
    return value if 1 <= value <= 8 else 1


_PNG_TEXT = (b"tEXt", b"zTXt", b"iTXt")


def _png_exif_chunk(path: str) -> tuple[bytes | None, bool]:
    """A PNG's eXIf payload, and whether text chunks follow the pixel data, found by seeking over the chunks."""
    after_pixels = False
    with open(path, "rb") as file:
        file.seek(8)
        while len(header := file.read(8)) == 8:
            length, kind = struct.unpack(">I4s", header)
            if kind == b"eXIf":
                return file.read(length), False
            if kind == b"IEND":
                break
            if kind == b"IDAT":
                after_pixels = True
            elif after_pixels and kind in _PNG_TEXT:
                return None, True
            file.seek(length + 4, 1)
    return None, False


def _exif_of(image: Image.Image) -> Image.Exif:
    # Pillow decodes a whole PNG to look for EXIF after the pixel data; seek for it instead, and decode only
    # when text chunks (ImageMagick's "Raw profile type exif", XMP) come after the pixels.
    if image.format == "PNG" and "exif" not in image.info and getattr(image, "filename", None):
        chunk, text_after_pixels = _png_exif_chunk(image.filename)
        if chunk is not None:
            exif = Image.Exif()
            exif.load(chunk)
            return exif
        if not text_after_pixels:
            return Image.Image.getexif(image)  # the text chunks before the pixels, already read
    return image.getexif()


def read_exif(image: Image.Image) -> ExifSummary:
    """Summarise EXIF of an opened (not yet decoded) image."""
    try:
        exif = _exif_of(image)
    except Exception:  # corrupt EXIF must not sink a decodable image
        return ExifSummary()
    camera: dict[str, Any] = {}
    for tag, name in _BASE_TAGS.items():
        if (value := _plain(exif.get(tag))) is not None:
            camera[name] = value
    try:
        sub = exif.get_ifd(_IFD_EXIF)
    except Exception:
        sub = {}
    for tag, name in _EXIF_TAGS.items():
        if (value := _plain(sub.get(tag))) is not None:
            camera[name] = value
    gps_ifd = _gps_ifd(exif)
    return ExifSummary(
        camera=camera,
        gps=_gps(gps_ifd),
        has_gps_tags=any(tag in gps_ifd for tag in (1, 2, 3, 4)),
        orientation=_orientation(image, exif),
        has_exif=bool(exif),
    )
