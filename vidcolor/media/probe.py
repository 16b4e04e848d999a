"""Tell what a file is from its content: an image, a video, or something vidcolor refuses."""

from __future__ import annotations

import enum
import os
import stat
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
    """Fail with one clear line on missing, empty, or unreadable paths.

    The file is really opened: permission bits are not the whole story (a parent folder
    without search permission, ACLs, root-squashed network mounts).
    """
    name = one_line(str(path))
    if str(path) == "":
        raise VidcolorError("'': an empty name is not a file or folder")
    try:
        info = path.stat()
    except FileNotFoundError:
        raise VidcolorError(f"{name}: no such file or folder") from None
    except OSError as exc:
        raise VidcolorError(f"{name}: cannot read ({(exc.strerror or str(exc)).lower()})") from None
    if stat.S_ISDIR(info.st_mode):
        if not os.access(path, os.R_OK | os.X_OK):
            raise VidcolorError(f"{name}: permission denied")
        return
    if not stat.S_ISREG(info.st_mode):
        raise VidcolorError(f"{name}: not a regular file")
    if info.st_size == 0:
        raise VidcolorError(f"{name}: file is empty")
    if not os.access(path, os.R_OK):
        raise VidcolorError(f"{name}: permission denied")
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise VidcolorError(f"{name}: cannot read ({(exc.strerror or str(exc)).lower()})") from None


# Pillow formats whose extra frames are an animation, or (TIFF) further pages of a scan; an MPO's
# extra frames are a camera's preview pictures of the same shot.
_ANIMATED_FORMATS = {"GIF", "PNG", "WEBP", "FLI", "AVIF"}
_PAGED_FORMATS = {"TIFF"}


def _image_frames(path: Path) -> tuple[str, int] | None:
    """(format, frames or pages that would be lost); None when Pillow does not know it."""
    try:
        with open_pillow(path) as image:
            if image.format is None:
                return None
            if image.format not in _ANIMATED_FORMATS | _PAGED_FORMATS:
                return image.format, 1
            try:
                return image.format, max(1, int(getattr(image, "n_frames", 1)))
            except (OSError, ValueError, SyntaxError, EOFError):
                return image.format, 1  # damaged after the first frame: reading it will tell
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
    found = _image_frames(path)
    if found is not None:
        image_format, frames = found
        if frames > 1 and image_format in _PAGED_FORMATS:
            raise VidcolorError(
                f"{name}: multi-page TIFF ({frames} pages); vidcolor colourises single "
                "pictures: split the pages first"
            )
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
