"""Step 6 (lossless part): drop metadata segments without touching pixels.

Each stripper walks the container's own structure, keeps what decoding and
colour need, and returns the bytes up to the format's end marker plus the
bytes found after it. What comes after the end is judged by `judge_trailing`:
declared extra images (MPO, Ultra HDR gain maps) and zero padding are dropped,
anything else (a ZIP glued to a JPEG) refuses the file.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

from mediahub.errors import InvalidInput


@dataclass(frozen=True)
class Stripped:
    data: bytes
    trailing: bytes
    declares_extra_images: bool = False


def _corrupt(fmt: str, why: str) -> InvalidInput:
    return InvalidInput(f"{fmt} structure is broken: {why}", code="corrupt_image")


def judge_trailing(stripped: Stripped, fmt: str) -> bytes:
    """The stripped bytes, or a refusal when unknown data follows the image."""
    tail = stripped.trailing
    if tail and not stripped.declares_extra_images and tail.strip(b"\x00\xff\r\n"):
        raise InvalidInput(
            f"{len(tail)} bytes of unknown data follow the end of the {fmt} image",
            code="trailing_data",
            trailing_bytes=len(tail),
        )
    return stripped.data


# --- JPEG -------------------------------------------------------------------

_APP0, _APP2, _APP14, _COM, _SOS, _EOI = 0xE0, 0xE2, 0xEE, 0xFE, 0xDA, 0xD9


def _keep_jpeg_segment(marker: int, payload: bytes) -> bool:
    if marker == _APP0:
        return payload.startswith((b"JFIF\x00", b"JFXX\x00"))
    if marker == _APP2:
        return payload.startswith(b"ICC_PROFILE\x00")
    if marker == _APP14:
        return payload.startswith(b"Adobe")  # colour transform of CMYK/YCCK files
    return not (0xE0 <= marker <= 0xEF or marker == _COM)


# A marker inside entropy-coded data: 0xFF followed by anything but stuffing (00),
# a restart marker (D0-D7) or fill (FF).
_SEGMENT_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")


def _entropy_end(data: bytes, pos: int) -> int:
    """Index of the first real marker after entropy-coded data starting at pos."""
    match = _SEGMENT_MARKER.search(data, pos)
    if match is None:
        raise _corrupt("JPEG", "image data ends without an end marker")
    return match.start()


def strip_jpeg(data: bytes) -> Stripped:
    if not data.startswith(b"\xff\xd8"):
        raise _corrupt("JPEG", "no start marker")
    out = [b"\xff\xd8"]
    pos, n, mpf = 2, len(data), False
    while pos < n:
        if data[pos] != 0xFF:
            raise _corrupt("JPEG", f"expected a marker at byte {pos}")
        while pos < n and data[pos] == 0xFF:
            pos += 1
        if pos >= n:
            break
        marker = data[pos]
        pos += 1
        if marker == _EOI:
            out.append(b"\xff\xd9")
            return Stripped(b"".join(out), data[pos:], mpf)
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:
            out.append(bytes((0xFF, marker)))
            continue
        if pos + 2 > n:
            break
        (length,) = struct.unpack(">H", data[pos : pos + 2])
        if length < 2 or pos + length > n:
            raise _corrupt("JPEG", "segment runs past the end of the file")
        payload = data[pos + 2 : pos + length]
        if marker == _APP2 and payload.startswith(b"MPF\x00"):
            mpf = True
        if _keep_jpeg_segment(marker, payload):
            out.append(bytes((0xFF, marker)) + data[pos : pos + length])
        pos += length
        if marker == _SOS:
            end = _entropy_end(data, pos)
            out.append(data[pos:end])
            pos = end
    raise _corrupt("JPEG", "no end marker")


def with_orientation(jpeg: bytes, orientation: int) -> bytes:
    """A stripped JPEG with one EXIF field back: its orientation, so viewers turn the stored pixels upright.

    The segment goes after a leading JFIF APP0 (which must come first), else right after the start marker.
    """
    tiff = b"II*\x00\x08\x00\x00\x00" + struct.pack("<HHHIHH", 1, 0x0112, 3, 1, orientation, 0) + b"\x00" * 4
    payload = b"Exif\x00\x00" + tiff
    segment = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    pos = 2
    if jpeg[2:4] == b"\xff\xe0":
        pos = 4 + struct.unpack_from(">H", jpeg, 4)[0]
    return jpeg[:pos] + segment + jpeg[pos:]


# --- PNG --------------------------------------------------------------------

_PNG_SIG = b"\x89PNG\r\n\x1a\n"
_PNG_KEEP = {
    b"IHDR", b"PLTE", b"IDAT", b"IEND", b"tRNS", b"cHRM", b"gAMA", b"iCCP", b"sBIT", b"sRGB",
    b"pHYs", b"bKGD", b"acTL", b"fcTL", b"fdAT", b"cICP", b"mDCv", b"cLLi",
}


def strip_png(data: bytes) -> Stripped:
    if not data.startswith(_PNG_SIG):
        raise _corrupt("PNG", "no signature")
    out, pos, n = [_PNG_SIG], len(_PNG_SIG), len(data)
    while pos + 12 <= n:
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        end = pos + 12 + length
        if end > n:
            raise _corrupt("PNG", f"chunk {kind!r} runs past the end of the file")
        if kind in _PNG_KEEP:
            out.append(data[pos:end])
        elif not kind[:1].islower():
            raise _corrupt("PNG", f"unknown critical chunk {kind!r}")
        pos = end
        if kind == b"IEND":
            return Stripped(b"".join(out), data[pos:])
    raise _corrupt("PNG", "no IEND chunk")


# --- WebP -------------------------------------------------------------------

# What a WebP keeps: the image itself, its animation, alpha and colour profile. Anything else (EXIF, XMP,
# and chunks no decoder reads but any tool may write, such as a location) is dropped.
_WEBP_KEEP = {b"VP8 ", b"VP8L", b"VP8X", b"ALPH", b"ANIM", b"ANMF", b"ICCP"}
_VP8X_EXIF, _VP8X_XMP = 0x08, 0x04


def strip_webp(data: bytes) -> Stripped:
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        raise _corrupt("WebP", "no RIFF/WEBP header")
    (riff_size,) = struct.unpack("<I", data[4:8])
    end = 8 + riff_size
    if end > len(data):
        raise _corrupt("WebP", "RIFF size runs past the end of the file")
    chunks, pos = [], 12
    while pos + 8 <= end:
        kind = data[pos : pos + 4]
        (size,) = struct.unpack("<I", data[pos + 4 : pos + 8])
        stop = pos + 8 + size + (size & 1)
        if stop > end:
            raise _corrupt("WebP", f"chunk {kind!r} runs past the end of the file")
        chunk = data[pos:stop]
        if kind == b"VP8X" and size >= 10:
            flags = chunk[8] & ~(_VP8X_EXIF | _VP8X_XMP)
            chunk = chunk[:8] + bytes((flags,)) + chunk[9:]
        if kind in _WEBP_KEEP:
            chunks.append(chunk)
        pos = stop
    body = b"WEBP" + b"".join(chunks)
    return Stripped(b"RIFF" + struct.pack("<I", len(body)) + body, data[end:])


# --- GIF --------------------------------------------------------------------

_GIF_KEEP_APPS = (b"NETSCAPE2.0", b"ANIMEXTS1.0", b"ICCRGBG1012")


def _gif_sub_blocks_end(data: bytes, pos: int) -> int:
    n = len(data)
    while pos < n:
        size = data[pos]
        pos += 1 + size
        if size == 0:
            return pos
    raise _corrupt("GIF", "data sub-blocks run past the end of the file")


def _gif_colour_table(packed: int) -> int:
    return 3 * (1 << ((packed & 0x07) + 1)) if packed & 0x80 else 0


def strip_gif(data: bytes) -> Stripped:
    if data[:6] not in (b"GIF87a", b"GIF89a") or len(data) < 13:
        raise _corrupt("GIF", "no header")
    pos = 13 + _gif_colour_table(data[10])
    out, n = [data[:pos]], len(data)
    while pos < n:
        block = data[pos]
        if block == 0x3B:
            out.append(b"\x3b")
            return Stripped(b"".join(out), data[pos + 1 :])
        if block == 0x2C:
            if pos + 11 > n:
                break
            start = pos
            pos += 10 + _gif_colour_table(data[pos + 9]) + 1  # descriptor, table, LZW size
            pos = _gif_sub_blocks_end(data, pos)
            out.append(data[start:pos])
        elif block == 0x21 and pos + 2 <= n:
            start, label = pos, data[pos + 1]
            pos = _gif_sub_blocks_end(data, pos + 2)
            app_id = data[start + 3 : start + 14]
            if label == 0xF9 or label == 0x01 or (label == 0xFF and app_id in _GIF_KEEP_APPS):
                out.append(data[start:pos])
        else:
            raise _corrupt("GIF", f"unknown block 0x{block:02x} at byte {pos}")
    raise _corrupt("GIF", "no trailer")


STRIPPERS = {"jpeg": strip_jpeg, "png": strip_png, "webp": strip_webp, "gif": strip_gif}
