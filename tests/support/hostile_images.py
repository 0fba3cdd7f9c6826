"""Hostile images made on the spot: JPEGs with many scans, files cut short."""

from __future__ import annotations

import io
import struct

from PIL import Image


def _segments(data: bytes) -> list[tuple[int, int, int]]:
    """(marker, start, end) of each segment up to EOI; an SOS segment's end includes its entropy-coded data."""
    out, pos = [], 2
    while pos < len(data):
        assert data[pos] == 0xFF
        marker = data[pos + 1]
        if marker == 0xD9:
            out.append((marker, pos, pos + 2))
            break
        end = pos + 2 + struct.unpack(">H", data[pos + 2:pos + 4])[0]
        if marker == 0xDA:  # entropy-coded data runs to the next marker that is not a stuffed 0xFF00 or a restart
            while not (data[end] == 0xFF and data[end + 1] not in (0x00, *range(0xD0, 0xD8))):
                end += 1
        out.append((marker, pos, end))
        pos = end
    return out


def many_scan_jpeg(scans: int, size: tuple[int, int] = (64, 48)) -> bytes:
    """A progressive JPEG of `scans` scans that decodes to the same picture as its first few.

    Pillow writes libjpeg's standard progression; its first AC scan (a first pass, Ah=0) is
    repeated: each repeat decodes the same coefficients again (libjpeg only warns about
    the progression), so the file is valid apart from its number of scans.
    """
    picture = Image.linear_gradient("L").resize(size).convert("RGB")
    out = io.BytesIO()
    picture.save(out, "JPEG", progressive=True, quality=80)
    data = out.getvalue()
    segments = _segments(data)
    sos = [s for s in segments if s[0] == 0xDA]
    for index, (_, start, end) in enumerate(sos):
        header_length = struct.unpack(">H", data[start + 2:start + 4])[0]
        ns = data[start + 4]
        ss, _se, approx = data[start + 5 + 2 * ns:start + 8 + 2 * ns]
        if ss > 0 and approx >> 4 == 0 and header_length:
            repeat = data[start:end]
            extra = scans - len(sos)
            assert extra >= 0, f"Pillow's progression already has {len(sos)} scans"
            return data[:end] + repeat * extra + data[end:]
    raise AssertionError("no AC first scan to repeat")


def cut(data: bytes, fraction: float, trailer: bytes = b"") -> bytes:
    """The first `fraction` of a file, then `trailer` (an end marker that makes it look complete)."""
    return data[:int(len(data) * fraction)] + trailer
