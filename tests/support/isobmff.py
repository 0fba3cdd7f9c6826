"""ISO BMFF (MP4/MOV) boxes for tests: build metadata boxes, insert them into a file, list a file's boxes.

Insertion never moves sample data: it refuses to insert before the last `mdat`, so the
chunk offsets (stco/co64) of the file stay right. Write the clip without faststart
(moov after mdat) to insert into moov and its tracks.
"""

from __future__ import annotations

import struct

# Boxes whose payload is a list of boxes (`meta` after its 4-byte version/flags).
CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"udta", b"edts", b"dinf", b"meta", b"ilst"}
XMP_UUID = bytes.fromhex("BE7ACFCB97A942E89C71999491E3AFAC")


def box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I4s", 8 + len(payload), kind) + payload


def full_box(kind: bytes, payload: bytes, version: int = 0, flags: int = 0) -> bytes:
    return box(kind, struct.pack(">I", version << 24 | flags) + payload)


def _children(data: bytes, start: int, end: int) -> list[tuple[bytes, int, int]]:
    """(type, start, end) of each box between start and end."""
    out, at = [], start
    while at + 8 <= end:
        size, kind = struct.unpack(">I4s", data[at:at + 8])
        if size == 1:
            size = struct.unpack(">Q", data[at + 8:at + 16])[0]
        elif size == 0:
            size = end - at
        if size < 8 or at + size > end:
            break
        out.append((kind, at, at + size))
        at += size
    return out


def _payload_start(data: bytes, kind: bytes, start: int) -> int:
    header = 16 if struct.unpack(">I", data[start:start + 4])[0] == 1 else 8
    # QuickTime's meta has no version/flags (its first child follows at once); ISO's has four bytes.
    if kind == b"meta" and data[start + header + 4:start + header + 8] != b"hdlr":
        header += 4
    return start + header


def box_paths(data: bytes) -> list[str]:
    """Every box as a slash-separated path of types ("moov/udta/\\xa9xyz"), in file order."""
    paths: list[str] = []

    def walk(start: int, end: int, prefix: str) -> None:
        for kind, at, stop in _children(data, start, end):
            path = prefix + kind.decode("latin-1")
            paths.append(path)
            if kind in CONTAINERS:
                walk(_payload_start(data, kind, at), stop, path + "/")

    walk(0, len(data), "")
    return paths


def insert(data: bytes, parent: tuple[bytes, ...], new: bytes, nth: int = 0, first: bool = False) -> bytes:
    """`new` appended at the end of the box at `parent` (types from the top; () for the file's end),
    or put before its first child (`first`).

    `nth` picks among siblings of the last type (the second trak: nth=1); missing
    containers on the way are not created.
    """
    if not parent:
        return data + new
    start, end, chain = 0, len(data), []
    for depth, kind in enumerate(parent):
        found = [c for c in _children(data, start, end) if c[0] == kind]
        box_at = found[nth if depth == len(parent) - 1 else 0]
        chain.append(box_at)
        start, end = _payload_start(data, kind, box_at[1]), box_at[2]
    last_mdat = max(stop for kind, _, stop in _children(data, 0, len(data)) if kind == b"mdat")
    where = start if first else end
    assert where >= last_mdat, "inserting before mdat would move the samples"
    out = bytearray(data[:where] + new + data[where:])
    for _, at, _stop in chain:  # every enclosing box grows by len(new)
        size = struct.unpack(">I", out[at:at + 4])[0]
        assert size != 1, "64-bit box sizes are not handled here"
        out[at:at + 4] = struct.pack(">I", size + len(new))
    return bytes(out)


def quicktime_text(kind: bytes, text: str) -> bytes:
    """A QuickTime user-data text atom (\\xa9xyz, \\xa9nam): length, language, text."""
    raw = text.encode()
    return box(kind, struct.pack(">HH", len(raw), 0x15C7) + raw)


def loci(latitude: float, longitude: float, name: str = "Home") -> bytes:
    """3GPP TS 26.244 location box: fixed-point 16.16 longitude, latitude, altitude."""
    fixed = lambda value: struct.pack(">i", round(value * 65536))  # noqa: E731
    body = struct.pack(">H", 0x15C7) + name.encode() + b"\0" + b"\0" + fixed(longitude) + fixed(latitude) \
        + fixed(10.0) + b"Earth\0" + b"\0"
    return full_box(b"loci", body)


def _hdlr(handler: bytes) -> bytes:
    return full_box(b"hdlr", b"\0" * 4 + handler + b"\0" * 12 + b"\0")


def mdta_meta(items: dict[str, str]) -> bytes:
    """QuickTime metadata (meta/hdlr mdta/keys/ilst): Apple's `com.apple.quicktime.*` keys."""
    keys = full_box(b"keys", struct.pack(">I", len(items)) + b"".join(box(b"mdta", k.encode()) for k in items))
    values = b"".join(
        box(struct.pack(">I", index), box(b"data", struct.pack(">II", 1, 0) + value.encode()))
        for index, value in enumerate(items.values(), start=1)
    )
    return box(b"meta", _hdlr(b"mdta") + keys + box(b"ilst", values))


def cover_meta(jpeg: bytes) -> bytes:
    """iTunes-style metadata (udta/meta/hdlr mdir/ilst/covr) holding a JPEG cover picture."""
    cover = box(b"covr", box(b"data", struct.pack(">II", 13, 0) + jpeg))  # data type 13: JPEG
    return full_box(b"meta", _hdlr(b"mdir") + box(b"ilst", cover))


def xmp_uuid(xmp: str) -> bytes:
    """An XMP packet in its uuid box (Adobe's UUID), as cameras and editors write it."""
    return box(b"uuid", XMP_UUID + xmp.encode())


def gps_xmp(latitude: str, longitude: str) -> str:
    return (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description rdf:about="" xmlns:exif="http://ns.adobe.com/exif/1.0/">'
        f"<exif:GPSLatitude>{latitude}</exif:GPSLatitude><exif:GPSLongitude>{longitude}</exif:GPSLongitude>"
        '</rdf:Description></rdf:RDF></x:xmpmeta><?xpacket end="w"?>'
    )


def append_data_track(data: bytes, samples: list[bytes], entry: bytes = b"gpmd", track_id: int = 2) -> bytes:
    """A timed-metadata track (GoPro GPMF's `gpmd`, a camera's GPS log) whose samples sit in a new mdat at
    the end of the file: moov must be the file's last box."""
    boxes = _children(data, 0, len(data))
    assert boxes[-1][0] == b"moov", "moov must be last: the track is appended to it, its samples after it"
    count = len(samples)
    tkhd = full_box(b"tkhd", struct.pack(">IIIII8xhhhH", 0, 0, track_id, 0, count, 0, 0, 0, 0)
                    + struct.pack(">9i", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000) + struct.pack(">II", 0, 0),
                    flags=3)
    mdhd = full_box(b"mdhd", struct.pack(">IIIIHH", 0, 0, 25, count, 0x55C4, 0))
    dinf = box(b"dinf", full_box(b"dref", struct.pack(">I", 1) + full_box(b"url ", b"", flags=1)))
    stbl_without_stco = (
        full_box(b"stsd", struct.pack(">I", 1) + box(entry, b"\0" * 6 + struct.pack(">H", 1)))
        + full_box(b"stts", struct.pack(">III", 1, count, 1))
        + full_box(b"stsc", struct.pack(">IIII", 1, 1, count, 1))
        + full_box(b"stsz", struct.pack(">II", 0, count) + b"".join(struct.pack(">I", len(s)) for s in samples))
    )

    def trak(offset: int) -> bytes:
        stbl = box(b"stbl", stbl_without_stco + full_box(b"stco", struct.pack(">II", 1, offset)))
        minf = box(b"minf", full_box(b"nmhd", b"") + dinf + stbl)
        return box(b"trak", tkhd + box(b"mdia", mdhd + _hdlr(b"meta") + minf))

    size = len(trak(0))  # whatever the offset: stco holds it in 4 bytes
    grown = insert(data, (b"moov",), trak(len(data) + size + 8))
    return grown + box(b"mdat", b"".join(samples))
