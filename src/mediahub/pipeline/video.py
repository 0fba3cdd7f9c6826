"""The video row: probe with PyAV, prove the stream decodes to its end, take a poster.

The poster (a keyframe about 1 s or 10 % in, upright per the display matrix)
gets the same variants, focal point, pHash and duplicate-detection fingerprint as a photo, so
a video matches another one (or a photo) perceptually. It gets no pixel digest:
many clips fade in, and every black poster of one size would match exactly.
The stored original is a stream copy of the upload without metadata
(`transcode.strip_metadata`), never the uploaded file itself: a location may
sit in boxes FFmpeg does not report as tags.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
from PIL import Image

from mediahub.errors import InvalidInput, LimitExceeded, UnsupportedType, library_reason
from mediahub.pipeline import watermark as watermark_step
from mediahub.pipeline.fingerprint import Fingerprint, perceptual_hash
from mediahub.pipeline.image import ImageOptions, render_focused
from mediahub.pipeline.normalise import to_display
from mediahub.pipeline.placeholders import PLACEHOLDERS, placeholders
from mediahub.pipeline.sniff import Sniffed
from mediahub.pipeline.variants import Encoded, encode_all

_CONTAINERS = {"mp4": {"mov", "mp4"}, "mov": {"mov", "mp4"}, "webm": {"webm", "matroska"}}


@dataclass(frozen=True)
class VideoOptions:
    image: ImageOptions  # its pixel limits apply to one frame
    max_duration: float
    max_frames: int = 36_000


@dataclass
class ProcessedVideo:
    width: int
    height: int
    duration: float | None
    variants: list[Encoded]
    phash: str
    metadata: dict[str, Any] = field(default_factory=dict)
    fingerprint: Fingerprint | None = None  # of the poster (dedup/policy.py)


def _open(path: Path, sniffed: Sniffed) -> av.container.InputContainer:
    try:
        container = av.open(str(path), metadata_errors="ignore")
    except Exception as exc:  # untrusted bytes: any demuxer failure is a corrupt file
        raise InvalidInput(f"cannot read the video container: {library_reason(exc)}", code="corrupt_video") from None
    names = set(container.format.name.split(","))
    if not names & _CONTAINERS[sniffed.format]:
        container.close()
        raise UnsupportedType(f"container {container.format.name!r} does not match {sniffed.format}")
    return container


def _duration(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> float | None:
    if container.duration:
        return container.duration / av.time_base
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    return None


def is_played(stream: av.stream.Stream) -> bool:
    """A video or audio track; not a cover picture (a video stream to FFmpeg, an image file to us)."""
    return stream.type in ("video", "audio") and not stream.disposition & av.stream.Disposition.attached_pic


def _count_packets(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> tuple[int, float]:
    """Demux (without decoding) every packet: cheap, and it finds truncated files."""
    packets, last = 0, 0.0
    try:
        for packet in container.demux(stream):
            if packet.size:
                packets += 1
                if packet.pts is not None and packet.time_base:
                    last = max(last, float(packet.pts * packet.time_base))
    except av.error.FFmpegError as exc:
        raise InvalidInput(f"video data is corrupt: {library_reason(exc)}", code="corrupt_video") from None
    return packets, last


def _poster(container: av.container.InputContainer, stream: av.video.stream.VideoStream,
            duration: float | None) -> tuple[Image.Image, int]:
    at = min(1.0, duration * 0.1) if duration else 0.0
    try:
        if at > 0:
            container.seek(int(at / stream.time_base), stream=stream, backward=True, any_frame=False)
        else:
            container.seek(0)
        for frame in container.decode(stream):
            # FFmpeg's av_display_rotation_get: degrees counter-clockwise, PIL's direction too.
            # A phone's portrait clip (QuickTime matrix 0,1,-1,0) reads -90: turn 90 degrees clockwise.
            rotation = int(frame.rotation or 0) % 360
            return frame.to_image(), rotation
    except av.error.FFmpegError as exc:
        raise InvalidInput(f"video frames cannot be decoded: {library_reason(exc)}", code="corrupt_video") from None
    raise InvalidInput("video has no decodable frame", code="corrupt_video")


def _check_frames(frames: int, limit: int) -> None:
    if frames > limit:
        raise LimitExceeded(f"video has {frames} frames; at most {limit}", code="too_many_frames")


def process_video(path: Path, sniffed: Sniffed, options: VideoOptions) -> ProcessedVideo:
    container = _open(path, sniffed)
    try:
        streams = [s for s in container.streams.video if is_played(s)]
        if not streams:
            raise InvalidInput("video file has no video stream", code="no_video_stream")
        stream = streams[0]
        width, height = stream.codec_context.width, stream.codec_context.height
        limits = options.image.limits
        if width < 1 or height < 1:
            raise InvalidInput("video stream has no picture size", code="corrupt_video")
        if max(width, height) > limits.max_side or width * height > limits.max_pixels:
            raise LimitExceeded(f"video is {width}x{height}; over the pixel limits")
        duration = _duration(container, stream)
        if duration and duration > options.max_duration:
            raise LimitExceeded(f"video lasts {duration:.1f} s; at most {options.max_duration:.0f} s",
                                code="too_long")
        declared = stream.frames or 0
        _check_frames(declared, options.max_frames)
        packets, last_pts = _count_packets(container, stream)
        _check_frames(packets, options.max_frames)  # a header may understate, or say nothing
        if packets == 0 or (declared and packets < declared):
            raise InvalidInput(f"video is truncated: {packets} of {declared or '?'} frames present",
                               code="truncated_video")
        poster, rotation = _poster(container, stream, duration)
        if rotation:
            poster = poster.rotate(rotation, expand=True)
        display = to_display(poster)
        renders, whole, focus = render_focused(display, options.image.sizes, options.image.focal)
        return ProcessedVideo(
            width=display.size[0],
            height=display.size[1],
            duration=duration or (last_pts or None),
            variants=encode_all(renders, options.image.sizes, options.image.encode, options.image.watermark),
            phash=perceptual_hash(whole),
            metadata={
                "container": container.format.name,
                "video_codec": stream.codec_context.name,
                "audio_codecs": [a.codec_context.name for a in container.streams.audio],
                "frame_rate": float(stream.average_rate) if stream.average_rate else None,
                "frames": declared or packets,
                "rotation": rotation,
                PLACEHOLDERS: placeholders(whole),  # of the poster
                **watermark_step.metadata(options.image.watermark),  # of the poster's variants
                **(focus.metadata() if focus is not None else {}),
            },
            fingerprint=Fingerprint.of(whole),
        )
    finally:
        container.close()
