"""Every file format the service recognises: its media kind, content type and object extension.

Sniffing names the format of an upload; stored objects (originals, variants,
videos) take their extension and content type from this table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

MediaKind = Literal["image", "video"]


@dataclass(frozen=True)
class Format:
    name: str  # as sniffed and recorded (a variant's "format")
    media_kind: MediaKind
    content_type: str
    extension: str | None = None  # None: never stored in this format (an upload in it is re-encoded)


FORMATS: dict[str, Format] = {
    fmt.name: fmt
    for fmt in (
        Format("jpeg", "image", "image/jpeg", "jpg"),
        Format("png", "image", "image/png", "png"),
        Format("gif", "image", "image/gif", "gif"),
        Format("webp", "image", "image/webp", "webp"),
        Format("avif", "image", "image/avif", "avif"),
        Format("heif", "image", "image/heif"),
        Format("tiff", "image", "image/tiff"),
        Format("bmp", "image", "image/bmp"),
        Format("ico", "image", "image/vnd.microsoft.icon"),
        Format("mp4", "video", "video/mp4", "mp4"),
        Format("mov", "video", "video/quicktime", "mov"),
        Format("webm", "video", "video/webm", "webm"),
    )
}
CONTENT_TYPES = {name: fmt.content_type for name, fmt in FORMATS.items()}
FORMAT_OF_CONTENT_TYPE = {content_type: name for name, content_type in CONTENT_TYPES.items()}
EXTENSIONS = {name: fmt.extension for name, fmt in FORMATS.items() if fmt.extension}  # formats stored as such
KNOWN_TYPES: dict[MediaKind, frozenset[str]] = {
    kind: frozenset(name for name, fmt in FORMATS.items() if fmt.media_kind == kind) for kind in ("image", "video")
}
