"""Step 2: the real type from the magic bytes. Names and client types are hints only."""

from __future__ import annotations

import re
from dataclasses import dataclass

from mediahub.entities import MediaKind
from mediahub.errors import InvalidInput, UnsupportedType
from mediahub.formats import FORMATS


@dataclass(frozen=True)
class Sniffed:
    format: str  # a name in formats.FORMATS
    media_kind: MediaKind
    mime: str


_HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1", b"mif2"}
_AVIF_BRANDS = {b"avif", b"avis"}
_MP4_BRANDS = {b"isom", b"iso2", b"iso4", b"iso5", b"iso6", b"mp41", b"mp42", b"avc1", b"M4V ", b"dash", b"mmp4", b"MSNV", b"3gp4", b"3gp5", b"3g2a"}

# Formats we recognise only to name them in the refusal.
_KNOWN_REFUSED: tuple[tuple[bytes, int, str], ...] = (
    (b"%PDF-", 0, "PDF"),
    (b"8BPS", 0, "PSD"),
    (b"%!PS", 0, "PostScript/EPS"),
    (b"\xc5\xd0\xd3\xc6", 0, "EPS"),
    (b"\xd7\xcd\xc6\x9a", 0, "WMF"),
    (b"\x01\x00\x09\x00", 0, "WMF"),
    (b"\xff\x0a", 0, "JPEG XL"),
    (b"\x00\x00\x00\x0cJXL \r\n\x87\n", 0, "JPEG XL"),
    (b"BPG\xfb", 0, "BPG"),
    (b"PK\x03\x04", 0, "ZIP"),
    (b"PK\x05\x06", 0, "ZIP"),
    (b"\x1f\x8b", 0, "gzip"),
    (b"Rar!", 0, "RAR"),
    (b"7z\xbc\xaf", 0, "7z"),
    (b"\x7fELF", 0, "executable"),
    (b"MZ", 0, "executable"),
)
_MARKUP_RE = re.compile(rb"^\s*(<\?xml|<!doctype|<svg|<html|<head|<body|<script|<!--)", re.IGNORECASE)


def _found(name: str) -> Sniffed:
    fmt = FORMATS[name]
    return Sniffed(fmt.name, fmt.media_kind, fmt.content_type)


def _refused(kind: str) -> UnsupportedType:
    return UnsupportedType(f"{kind} files are not accepted", detected=kind)


def _iso_bmff(head: bytes) -> Sniffed | None:
    if len(head) < 12 or head[4:8] != b"ftyp":
        return None
    box_size = int.from_bytes(head[0:4], "big")
    major = head[8:12]
    compatible = {head[i : i + 4] for i in range(16, min(box_size, len(head)) - 3, 4)}
    brands = {major} | compatible
    if major in _AVIF_BRANDS or (major in _HEIF_BRANDS and brands & _AVIF_BRANDS and not brands & {b"heic", b"heix"}):
        return _found("avif")
    if brands & _HEIF_BRANDS and major not in _MP4_BRANDS and major != b"qt  ":
        return _found("heif")
    if major == b"qt  ":
        return _found("mov")
    if brands & _MP4_BRANDS or major.startswith(b"3g"):
        return _found("mp4")
    raise _refused(f"ISO media ({major.decode('latin-1').strip()!r})")


def sniff(head: bytes) -> Sniffed:
    """Identify the file from its first bytes, or refuse it with a stable code."""
    if not head:
        raise InvalidInput("file is empty", code="empty_file")
    if head.startswith(b"\xff\xd8\xff"):
        return _found("jpeg")
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return _found("png")
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return _found("gif")
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return _found("webp")
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        raise _refused("AVI")
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return _found("tiff")
    if head[:2] == b"BM" and len(head) >= 26:
        return _found("bmp")
    if head[:4] == b"\x00\x00\x01\x00":
        return _found("ico")
    if head[:4] == b"\x1a\x45\xdf\xa3":
        if b"webm" in head[:64]:
            return _found("webm")
        raise _refused("Matroska")
    iso = _iso_bmff(head)
    if iso is not None:
        return iso
    for magic, offset, kind in _KNOWN_REFUSED:
        if head[offset : offset + len(magic)] == magic:
            raise _refused(kind)
    if _MARKUP_RE.match(head.lstrip(b"\xef\xbb\xbf")):
        raise _refused("SVG/HTML/XML markup")
    raise UnsupportedType("file type not recognised", detected="unknown")
