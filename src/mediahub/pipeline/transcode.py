"""Writing videos with PyAV: the web rendition, and originals without metadata.

Neither output copies container or stream metadata (the muxer adds only its
own technical tags), so a location, a device name or an author never reaches
what is served. That holds whatever box or element carried it (QuickTime
udta, mdta keys/ilst, XMP uuid boxes, 3GPP loci, per-track metadata, cover
art, Matroska tags and attachments, GPS data tracks): only the video and
audio packets are written, into a container the muxer builds afresh. The
display matrix is not metadata: it is kept, so players still show the
picture upright.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av

from mediahub.errors import InvalidInput, library_reason
from mediahub.pipeline.video import is_played

WEB_MAX_SIDE = 1280
WEB_VIDEO_OPTIONS = {"crf": "23", "preset": "veryfast", "profile": "high"}
WEB_AUDIO_RATE = 48_000
FASTSTART = {"movflags": "+faststart"}  # moov before mdat: playback starts before the download ends
# Muxer names by sniffed container format.
MUXERS = {"mp4": "mp4", "mov": "mov", "webm": "webm"}
# Stream tags a player needs (WebM's alpha flag; an audio track's language); every other tag is dropped.
PLAYBACK_TAGS = ("alpha_mode", "language")


@dataclass(frozen=True)
class WebVideo:
    width: int  # as displayed (after the display matrix)
    height: int
    size: int


def even_fit(width: int, height: int, max_side: int) -> tuple[int, int]:
    """Fit inside max_side x max_side, never upscale, both sides even (4:2:0 chroma needs it)."""
    scale = min(1.0, max_side / max(width, height))
    return max(2, round(width * scale / 2) * 2), max(2, round(height * scale / 2) * 2)


def _mux_options(muxer: str) -> dict[str, str]:
    return FASTSTART if muxer in {"mp4", "mov"} else {}


def strip_metadata(path: Path, fmt: str) -> None:
    """Replace the file at `path` with a stream copy of its video and audio, without metadata.

    Every video's stored original goes through here, whatever its container
    appears to carry: FFmpeg reports only some location carriers as tags, so
    what it reports cannot decide. Data streams (timecode, GPS tracks),
    subtitles, attachments and cover pictures are dropped with the tags.
    """
    muxer = MUXERS[fmt]
    clean = path.with_name(path.name + ".clean")
    try:
        with av.open(str(path), metadata_errors="ignore") as source, \
                av.open(str(clean), "w", format=muxer, options=_mux_options(muxer)) as target:
            kept = [s for s in source.streams if is_played(s)]
            copies = {s.index: target.add_stream_from_template(s) for s in kept}
            for original, out in zip(kept, copies.values(), strict=True):
                out.metadata.clear()
                out.metadata.update({k: v for k, v in original.metadata.items() if k.lower() in PLAYBACK_TAGS})
            for packet in source.demux(kept):
                if packet.dts is None:  # the demuxer's end-of-stream marker
                    continue
                packet.stream = copies[packet.stream.index]
                target.mux(packet)
        os.replace(clean, path)
    except av.error.FFmpegError as exc:
        raise InvalidInput(f"video cannot be rewritten without its metadata: {library_reason(exc)}",
                           code="corrupt_video") from None
    finally:
        clean.unlink(missing_ok=True)


def transcode_web(source_path: Path, target_path: Path, max_side: int = WEB_MAX_SIDE) -> WebVideo:
    """H.264 (yuv420p, even sides, longest side <= max_side) + AAC in a faststart MP4."""
    try:
        with av.open(str(source_path), metadata_errors="ignore") as source, \
                av.open(str(target_path), "w", format="mp4", options=FASTSTART) as target:
            width, height = _transcode(source, target, max_side)
    except av.error.FFmpegError as exc:
        target_path.unlink(missing_ok=True)
        raise InvalidInput(f"video cannot be transcoded: {library_reason(exc)}", code="transcode_failed") from None
    return WebVideo(width, height, target_path.stat().st_size)


def _transcode(source: av.container.InputContainer, target: av.container.OutputContainer,
               max_side: int) -> tuple[int, int]:
    """Encode every frame; the displayed size of the result."""
    video_in = next(s for s in source.streams.video if is_played(s))
    audio_in = source.streams.audio[0] if source.streams.audio else None
    width, height = even_fit(video_in.codec_context.width, video_in.codec_context.height, max_side)
    video_out = target.add_stream("libx264", rate=video_in.average_rate or Fraction(30), options=WEB_VIDEO_OPTIONS)
    video_out.width, video_out.height, video_out.pix_fmt = width, height, "yuv420p"
    video_out.codec_context.time_base = video_in.time_base
    audio_out = None
    if audio_in is not None:
        audio_out = target.add_stream("aac", rate=WEB_AUDIO_RATE, layout="stereo")
    rotation: int | None = None
    streams = [video_in] + ([audio_in] if audio_in is not None else [])
    for packet in source.demux(streams):
        for frame in packet.decode():
            if packet.stream is video_in:
                if rotation is None:  # the matrix must be set before the first frame is encoded
                    rotation = int(frame.rotation or 0)
                    if rotation:
                        video_out.set_display_rotation(rotation)
                target.mux(video_out.encode(frame.reformat(width, height, format="yuv420p")))
            elif audio_out is not None:
                frame.pts = None  # let the encoder count samples: input timestamps may have gaps
                target.mux(audio_out.encode(frame))
    if rotation is None:
        raise InvalidInput("video has no decodable frame", code="corrupt_video")
    target.mux(video_out.encode(None))
    if audio_out is not None:
        target.mux(audio_out.encode(None))
    return (height, width) if rotation % 180 else (width, height)
