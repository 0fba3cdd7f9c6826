"""Step 3: walk the file's container before any parser or decoder sees it.

Two things the header fields checked in `probe` do not bound:

* Work that grows with the structure, not the pixels: libjpeg passes over the
  whole image for every scan of a progressive JPEG (a small file with thousands of
  scans takes minutes), and Pillow walks PNG chunks, GIF blocks and TIFF directories in Python. Scans, frames and
  segments are counted here, in one pass over the bytes, and refused over a limit.
* Files cut short. A decoder that runs out of data fills the rest with grey and
  often only warns; so a container whose last part is missing (no end marker, a
  chunk or box running past the end of the file, no image data at all) is refused.
  JPEG entropy data cut short and closed with a forged end marker looks complete
  here: `probe.check_jpeg_data` decodes to find it.

Formats not walked (BMP, ICO) and what a walk does not see (TIFF strips, the
inside of HEIF items) are bounded by their decoders' own errors and by the pixel
worker's deadline.
"""

from __future__ import annotations

import re
import struct
from pathlib import Path

from mediahub.errors import InvalidInput, LimitExceeded
from mediahub.pipeline.probe import ImageLimits, check_size

# Marker segments, PNG chunks, GIF blocks, ISO-BMFF boxes: real files have tens to a few thousand.
MAX_SEGMENTS = 100_000
# GIF data sub-blocks: encoders write 255-byte ones, so a 20 MB GIF has some 80,000.
MAX_GIF_SUB_BLOCKS = 1_000_000

# After a JPEG scan's entropy-coded data: fill bytes, then a marker that is neither a stuffed 0xFF00 nor a restart.
# One 0xFF, not `\xff+`: a repeated first byte makes the regex engine retry at every 0xFF of the data (10x slower);
# the fill bytes before the marker are walked back over instead.
_JPEG_SCAN_END = re.compile(rb"\xff[^\x00\xff\xd0-\xd7]")
_JPEG_STANDALONE = {0x01, *range(0xD0, 0xD8)}
_SOS, _EOI = 0xDA, 0xD9


def truncated(what: str) -> InvalidInput:
    return InvalidInput(f"the file is cut short: {what}", code="truncated_image")


def _count_segment(count: int) -> int:
    count += 1
    if count > MAX_SEGMENTS:
        raise LimitExceeded(f"the file has more than {MAX_SEGMENTS} segments", code="too_many_segments")
    return count


def _walk_jpeg(data: bytes, limits: ImageLimits) -> None:
    """Up to the first EOI (an MPO's further pictures are trailing data to the first one)."""
    pos, scans, segments = 2, 0, 0
    while True:
        pos = data.find(b"\xff", pos)  # libjpeg skips stray bytes between segments too (with a warning)
        if pos < 0 or pos + 1 >= len(data):
            raise truncated("a JPEG without its end-of-image marker")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == _EOI:
            break
        if marker in _JPEG_STANDALONE:
            pos += 2
            continue
        if pos + 4 > len(data):
            raise truncated("a JPEG segment header runs past the end")
        end = pos + 2 + struct.unpack_from(">H", data, pos + 2)[0]
        if end > len(data):
            raise truncated("a JPEG segment runs past the end")
        segments = _count_segment(segments)
        pos = end
        if marker == _SOS:
            scans += 1
            if scans > limits.max_jpeg_scans:
                raise LimitExceeded(f"the JPEG has more than {limits.max_jpeg_scans} scans; "
                                    "every scan is a pass over the whole picture", code="too_many_scans")
            found = _JPEG_SCAN_END.search(data, end)
            if found is None:
                raise truncated("a JPEG scan without its end")
            pos = found.start()
            while pos > end and data[pos - 1] == 0xFF:
                pos -= 1
            if pos == end:
                raise truncated("a JPEG scan without image data")
    if scans == 0:
        raise truncated("a JPEG header without image data")


def _walk_png(data: bytes, limits: ImageLimits) -> None:
    pos, chunks = 8, 0
    while True:
        if pos + 12 > len(data):
            raise truncated("a PNG without its IEND chunk")
        length, kind = struct.unpack_from(">I4s", data, pos)
        pos += 12 + length
        if pos > len(data):
            raise truncated(f"the PNG {kind.decode('latin-1')!r} chunk runs past the end")
        chunks = _count_segment(chunks)
        if kind == b"IEND":
            return


def _skip_colour_table(data: bytes, pos: int, flags: int) -> int:
    return pos + 3 * (2 << (flags & 7)) if flags & 0x80 else pos


def _walk_gif(data: bytes, limits: ImageLimits) -> None:
    """Blocks up to the trailer; the frame limit applies before Pillow walks the frames itself."""
    if len(data) < 13:
        raise truncated("a GIF header")
    pos = _skip_colour_table(data, 13, data[10])
    frames = blocks = sub_blocks = 0
    while pos < len(data) and data[pos] != 0x3B:  # the trailer
        blocks = _count_segment(blocks)
        introducer = data[pos]
        if introducer == 0x2C:  # image descriptor, colour table, LZW code size, data
            frames += 1
            if frames > limits.max_frames:
                raise LimitExceeded(f"image has more than {limits.max_frames} frames; at most {limits.max_frames}",
                                    code="too_many_frames")
            if pos + 11 > len(data):
                raise truncated("a GIF frame header")
            check_size(*struct.unpack_from("<HH", data, pos + 5), limits)  # frame extents beyond the canvas
            pos = _skip_colour_table(data, pos + 10, data[pos + 9]) + 1
        elif introducer == 0x21:  # extension: label, then data sub-blocks
            pos += 2
        else:  # a stray byte: Pillow skips it, so do we
            pos += 1
            continue
        while True:  # data sub-blocks up to the empty one
            if pos >= len(data):
                raise truncated("a GIF block runs past the end")
            size = data[pos]
            pos += 1 + size
            sub_blocks += 1
            if sub_blocks > MAX_GIF_SUB_BLOCKS:
                raise LimitExceeded(f"the GIF has more than {MAX_GIF_SUB_BLOCKS} data blocks",
                                    code="too_many_segments")
            if size == 0:
                break
    if frames == 0:
        raise truncated("a GIF without image data")


def _walk_riff(data: bytes, limits: ImageLimits) -> None:
    if len(data) < 12 or struct.unpack_from("<I", data, 4)[0] + 8 > len(data):
        raise truncated("the WebP file is shorter than its RIFF header says")


def _box(data: bytes, pos: int, end: int) -> tuple[bytes, int, int]:
    """(type, start of its body, end) of the ISO-BMFF box at `pos`, which must end by `end`."""
    if pos + 8 > end:
        raise truncated("a box header runs past the end")
    size, kind = struct.unpack_from(">I4s", data, pos)
    body = pos + 8
    if size == 1:
        if pos + 16 > end:
            raise truncated("a box header runs past the end")
        size, body = struct.unpack_from(">Q", data, pos + 8)[0], pos + 16
    elif size == 0:  # to the end of its container
        size = end - pos
    if size < body - pos:
        raise InvalidInput(f"a box declares {size} bytes", code="corrupt_image")
    if pos + size > end:
        raise truncated(f"the {kind.decode('latin-1')!r} box runs past the end")
    return kind, body, pos + size


def _check_item_extents(data: bytes, pos: int, end: int) -> None:
    """Every extent of the `iloc` box (the items' places in the file) lies inside the file.

    libheif decodes a grid whose tiles point past the end of the file as if they were there.
    """
    if end - pos < 6:
        raise InvalidInput("the iloc box is shorter than its header", code="corrupt_image")
    version = data[pos]
    sizes = struct.unpack_from(">H", data, pos + 4)[0]
    offset_size, length_size, base_size = sizes >> 12, (sizes >> 8) & 15, (sizes >> 4) & 15
    index_size = sizes & 15 if version in (1, 2) else 0
    reader = _Reader(data, pos + 6, end)
    for _ in range(reader.number(4 if version == 2 else 2)):
        reader.number(4 if version == 2 else 2)  # item id
        method = reader.number(2) & 15 if version in (1, 2) else 0
        reader.number(2)  # data reference index
        base = reader.number(base_size)
        for _ in range(reader.number(2)):
            reader.number(index_size)
            offset, length = reader.number(offset_size), reader.number(length_size)
            if method == 0 and base + offset + length > len(data):
                raise truncated("an image item's data lies past the end")


class _Reader:
    def __init__(self, data: bytes, pos: int, end: int) -> None:
        self.data, self.pos, self.end = data, pos, end

    def number(self, size: int) -> int:
        if self.pos + size > self.end:
            raise InvalidInput("the iloc box is shorter than its entries", code="corrupt_image")
        value = int.from_bytes(self.data[self.pos:self.pos + size], "big")
        self.pos += size
        return value


def _walk_boxes(data: bytes, limits: ImageLimits) -> None:
    """ISO-BMFF (HEIF, AVIF): every top-level box, and every item's data, ends inside the file."""
    pos, boxes = 0, 0
    while pos < len(data):
        kind, body, pos = _box(data, pos, len(data))
        boxes = _count_segment(boxes)
        if kind == b"meta":  # a full box: version and flags, then boxes
            inner = body + 4
            while inner < pos:
                inner_kind, inner_body, inner = _box(data, inner, pos)
                boxes = _count_segment(boxes)
                if inner_kind == b"iloc":
                    _check_item_extents(data, inner_body, inner)


def _walk_tiff(data: bytes, limits: ImageLimits) -> None:
    """The IFD chain (one IFD per page): the frame limit applies before Pillow parses every IFD in Python."""
    if len(data) < 16:
        raise truncated("a TIFF header")
    order = "<" if data[:2] == b"II" else ">"
    big = struct.unpack_from(order + "H", data, 2)[0] == 43  # BigTIFF: 8-byte offsets and counts
    count_format, entry_size, offset_format = (("Q", 20, "Q") if big else ("H", 12, "I"))
    offset = struct.unpack_from(order + offset_format, data, 8 if big else 4)[0]
    seen: set[int] = set()
    while offset and offset not in seen:  # a loop in the chain ends it (Pillow stops there too)
        seen.add(offset)
        if len(seen) > limits.max_frames:
            raise LimitExceeded(f"image has more than {limits.max_frames} frames; at most {limits.max_frames}",
                                code="too_many_frames")
        counted = offset + struct.calcsize(count_format)
        if counted > len(data):
            raise truncated("a TIFF directory runs past the end")
        entries = struct.unpack_from(order + count_format, data, offset)[0]
        next_at = counted + entries * entry_size
        if next_at + struct.calcsize(offset_format) > len(data):
            raise truncated("a TIFF directory runs past the end")
        offset = struct.unpack_from(order + offset_format, data, next_at)[0]


_WALKS = {"jpeg": _walk_jpeg, "png": _walk_png, "gif": _walk_gif, "webp": _walk_riff, "heif": _walk_boxes,
          "avif": _walk_boxes, "tiff": _walk_tiff}


def check_structure(path: Path, fmt: str, limits: ImageLimits) -> None:
    """Refuse a file cut short, or whose scans, frames or segments exceed the limits, from its bytes alone."""
    walk = _WALKS.get(fmt)
    if walk is not None:
        walk(path.read_bytes(), limits)
