"""Settings -> pipeline options: the one place the pipeline's knobs are read from the settings."""

from __future__ import annotations

from mediahub.config import Settings, Watermark
from mediahub.pipeline.image import ImageOptions
from mediahub.pipeline.probe import ImageLimits
from mediahub.pipeline.variants import EncodeOptions
from mediahub.pipeline.video import VideoOptions


def encode_options(settings: Settings, *, base: bool = True, extra: bool = True) -> EncodeOptions:
    """JPEG/PNG (`base`) and the WebP/AVIF renditions the settings ask for (`extra`)."""
    return EncodeOptions(settings.jpeg_quality, settings.webp_quality, webp=extra and settings.make_webp,
                         avif=extra and settings.make_avif, avif_quality=settings.avif_quality, base=base)


def image_limits(settings: Settings) -> ImageLimits:
    """The pixel, frame and scan limits every decode of an image is held to."""
    return ImageLimits(settings.max_image_side, settings.max_image_pixels, settings.max_frames,
                       settings.max_total_pixels, settings.max_jpeg_scans)


def image_options(settings: Settings, encode: EncodeOptions | None = None, *, upload: bool = False,
                  watermark: Watermark | None = None) -> ImageOptions:
    """`upload`: the options of the upload path, which may leave variants to a job (a job never does);
    `watermark`: the mark of the item's field (`watermark.for_field`)."""
    return ImageOptions(
        limits=image_limits(settings),
        sizes=settings.image_sizes,
        encode=encode or encode_options(settings),
        original_quality=settings.original_quality,
        strip_gps=settings.strip_gps,
        defer_variants=upload and settings.defer_slow_variants,
        watermark=watermark,
    )


def video_options(settings: Settings, image: ImageOptions) -> VideoOptions:
    return VideoOptions(image, settings.max_video_duration, settings.max_video_frames)
