"""Tell what a file is from its content: an image, a video, or something vidcolor refuses."""

from __future__ import annotations

import enum
import os
from pathlib import Path

import av
from PIL import Image, UnidentifiedImageError

from vidcolor.errors import VidcolorError
from vidcolor.media.images import open_pillow

VIDEO_SUFFIXES = {
    ".mp4",
    ".m4v",
    ".mkv",
    ".mov",
    ".avi",
    ".webm",
    ".mpg",
    ".mpeg",
    ".ts",
    ".mts",
    ".m2ts",
    ".wmv",
    ".flv",
    ".ogv",
    ".3gp",
    ".mxf",
    ".dv",
}
IMAGE_SUFFIXES = {
    ".jpg",
    ".jpeg",
    ".png",
    ".tif",
    ".tiff",
    ".bmp",
    ".webp",
    ".gif",
    ".jp2",
    ".pgm",
    ".ppm",
    ".pbm",
    ".pnm",
}


class MediaKind(enum.Enum):
    IMAGE = "image"
    VIDEO = "video"


def check_readable(path: Path) -> None:
    """Fail with one clear line on missing, empty, or unreadable paths."""
    if not path.exists():
        raise VidcolorError(f"{path}: no such file or folder")
    if path.is_dir():
        return
    if not path.is_file():
        raise VidcolorError(f"{path}: not a regular file")
    if path.stat().st_size == 0:
        raise VidcolorError(f"{path}: file is empty")
    if not os.access(path, os.R_OK):
        raise VidcolorError(f"{path}: permission denied")


def _is_image(path: Path) -> bool:
    try:
        with open_pillow(path) as image:
            return image.format is not None
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        return False


def _has_video_stream(path: Path) -> bool:
    try:
        with av.open(str(path)) as container:
            stream = next(iter(container.streams.video), None)
            # Single-picture demuxers (image2, png_pipe, ...) are images, not films.
            return stream is not None and not container.format.name.endswith(("_pipe", "image2"))
    except (av.FFmpegError, OSError, UnicodeDecodeError):
        return False


def detect_kind(path: Path) -> MediaKind:
    """Sniff the content; the extension only breaks ties and shapes the error message."""
    check_readable(path)
    if path.is_dir():
        raise VidcolorError(f"{path}: is a folder")
    if _is_image(path):
        return MediaKind.IMAGE
    if _has_video_stream(path):
        return MediaKind.VIDEO
    suffix = path.suffix.lower()
    if suffix in VIDEO_SUFFIXES:
        raise VidcolorError(f"{path}: not a readable video (corrupt, or not really {suffix})")
    if suffix in IMAGE_SUFFIXES:
        raise VidcolorError(f"{path}: not a readable image (corrupt, or not really {suffix})")
    raise VidcolorError(f"{path}: neither a video nor an image vidcolor can read")
