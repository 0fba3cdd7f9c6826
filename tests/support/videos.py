"""Tiny videos made with PyAV for tests."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def make_clip(path: Path, *, rotation: int = 0, metadata: dict[str, str] | None = None, frames: int = 10,
              fmt: str = "mp4", stream_metadata: dict[str, str] | None = None,
              colour: tuple[int, int, int] | None = None, chapter: str | None = None) -> None:
    """64x32 H.264 MP4 (VP8 WebM) whose top-left quarter is red (or all one `colour`), with an optional
    display rotation, tags and a chapter title.

    The MP4 is not faststart: moov follows mdat, so boxes can be inserted into it (tests/support/isobmff.py).
    """
    options = {"movflags": "use_metadata_tags"} if metadata and fmt == "mp4" else {}
    with av.open(str(path), "w", format=fmt, options=options) as out:
        out.metadata.update(metadata or {})
        stream = out.add_stream("libvpx" if fmt == "webm" else "libx264", rate=25)
        stream.metadata.update(stream_metadata or {})
        if chapter:
            out.set_chapters([{"id": 1, "start": 0, "end": frames, "time_base": Fraction(1, 25),
                               "metadata": {"title": chapter}}])
        stream.width, stream.height, stream.pix_fmt = 64, 32, "yuv420p"
        if rotation:
            stream.set_display_rotation(rotation)
        picture = np.zeros((32, 64, 3), np.uint8)
        picture[:16, :32] = (255, 0, 0)
        if colour is not None:
            picture[:] = colour
        for _ in range(frames):
            out.mux(stream.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")))
        out.mux(stream.encode(None))
