"""Tell what a file is from its content: an image, a video, or something vidcolor refuses."""

from __future__ import annotations

import enum
import os
from pathlib import Path

import av
from PIL import UnidentifiedImageError

from vidcolor.errors import VidcolorError, one_line
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
    name = one_line(str(path))
    if not path.exists():
        raise VidcolorError(f"{name}: no such file or folder")
    if path.is_dir():
        return
    if not path.is_file():
        raise VidcolorError(f"{name}: not a regular file")
    if path.stat().st_size == 0:
        raise VidcolorError(f"{name}: file is empty")
    if not os.access(path, os.R_OK):
        raise VidcolorError(f"{name}: permission denied")


# Pillow formats whose extra frames are an animation (MPO and TIFF hold other pictures or pages).
_ANIMATED_FORMATS = {"GIF", "PNG", "WEBP", "FLI", "AVIF"}


def _image_frames(path: Path) -> int | None:
    """Frames of an animation (1 for a still); None when Pillow does not know the content."""
    try:
        with open_pillow(path) as image:
            if image.format is None:
                return None
            if image.format not in _ANIMATED_FORMATS:
                return 1
            try:
                return max(1, int(getattr(image, "n_frames", 1)))
            except (OSError, ValueError, SyntaxError, EOFError):
                return 1  # damaged after the first frame: reading it will tell
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return None


def is_cover_art(stream: av.stream.Stream) -> bool:
    """An attached picture (album or film cover): one still in a video stream, not a film."""
    return bool(stream.disposition & av.stream.Disposition.attached_pic)


def _video_streams(path: Path) -> tuple[int, int] | None:
    """(film streams, cover-art streams), or None when FFmpeg cannot open it as a film."""
    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            # Single-picture demuxers (image2, png_pipe, ...) are images, not films.
            if container.format.name.endswith(("_pipe", "image2")):
                return None
            covers = sum(1 for stream in container.streams.video if is_cover_art(stream))
            return len(container.streams.video) - covers, covers
    except (av.FFmpegError, OSError, UnicodeDecodeError):
        return None


def detect_kind(path: Path) -> MediaKind:
    """Sniff the content; the extension only breaks ties and shapes the error message."""
    check_readable(path)
    name = one_line(str(path))
    if path.is_dir():
        raise VidcolorError(f"{name}: is a folder")
    frames = _image_frames(path)
    if frames is not None:
        if frames > 1:
            raise VidcolorError(
                f"{name}: animated image ({frames} frames); vidcolor colourises stills and "
                "videos: convert it to a video first"
            )
        return MediaKind.IMAGE
    streams = _video_streams(path)
    if streams is not None and streams[0] > 0:
        return MediaKind.VIDEO
    if streams is not None and streams[1] > 0:
        raise VidcolorError(f"{name}: has no video stream (only cover art)")
    suffix = path.suffix.lower()
    if suffix in VIDEO_SUFFIXES:
        raise VidcolorError(f"{name}: not a readable video (corrupt, or not really {suffix})")
    if suffix in IMAGE_SUFFIXES:
        raise VidcolorError(f"{name}: not a readable image (corrupt, or not really {suffix})")
    raise VidcolorError(f"{name}: neither a video nor an image vidcolor can read")
