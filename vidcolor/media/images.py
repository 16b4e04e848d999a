"""Still images in and out: 8- and 16-bit, palette, grey, alpha, EXIF orientation.

OpenCV decodes and encodes the pixels (it keeps 16 bits, Pillow's RGB path does not); Pillow
reads the header (size, EXIF orientation) so that scans come out upright, as every viewer showed
them, and so that a picture too big to hold is refused before it is decoded.

OpenCV never sees a file name: it crashes the interpreter on names that are not valid UTF-8, so
bytes go through Python and OpenCV only decodes and encodes buffers.
"""

from __future__ import annotations

import os
import struct
import threading
import warnings
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps

from vidcolor.atomic import atomic_output
from vidcolor.errors import VidcolorError, one_line
from vidcolor.options import DEFAULT_MAX_PIXELS

# OpenCV's decoders warn on stderr about damaged input that they still read (e.g. an
# incomplete PNG buffer); vidcolor reports problems itself, as one line.
cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)  # failures are ours to say

# EXIF orientation -> operations that make the stored pixels upright.
_ORIENTATION_FIXES = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: np.swapaxes(a, 0, 1),
    6: lambda a: np.rot90(a, k=-1),
    7: lambda a: np.swapaxes(a[::-1, ::-1], 0, 1),
    8: lambda a: np.rot90(a, k=1),
}
_JPEG_QUALITY = 95
_EIGHT_BIT_ONLY = {".jpg", ".jpeg", ".webp", ".bmp", ".gif"}
_PILLOW_FORMATS = {"JPEG", "MPO"}  # read with Pillow rather than OpenCV (see read_image)
_JPEG_MAGIC = b"\xff\xd8\xff"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_METADATA = {b"eXIf", b"tEXt", b"zTXt", b"iTXt"}  # where Pillow finds EXIF in a PNG
_PNG_ANCILLARY_KEPT = {b"tRNS"}  # the only ancillary chunk that changes OpenCV's pixels
# What Pillow raises on a damaged file (beyond OSError, which covers "truncated").
_PILLOW_ERRORS = (OSError, ValueError, SyntaxError, EOFError, struct.error)

# Pillow's decompression-bomb check is a process-wide setting; it is switched off (our own
# limit decides) only while this lock is held, so concurrent openers do not undo each other.
_PILLOW_LOCK = threading.RLock()


@dataclass
class LoadedImage:
    rgb: np.ndarray  # (H, W, 3) or (H, W) uint8 / uint16 / float32
    alpha: np.ndarray | None  # (H, W) of the same dtype, or None


def check_pixel_count(path: Path, width: int, height: int, max_pixels: int) -> None:
    """Refuse a picture before its pixels are allocated: a tiny file can declare gigabytes."""
    if width * height > max_pixels:
        raise VidcolorError(
            f"{one_line(str(path))}: {width}x{height} pixels is more than the limit of "
            f"{max_pixels} (use --max-pixels to raise it)"
        )


@contextmanager
def open_pillow(path: Path, max_pixels: int | None = None) -> Iterator[Image.Image]:
    """Pillow, quiet, with our pixel limit (if given) instead of its own.

    Pillow's warnings (large scans, corrupt EXIF) would land on stderr; its bomb check raises
    an exception of its own, or refuses scans the user allowed with --max-pixels.
    """
    with _PILLOW_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            with Image.open(path) as image:
                if max_pixels is not None:
                    check_pixel_count(path, image.width, image.height, max_pixels)
                yield image
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def _header(path: Path, max_pixels: int) -> tuple[int, str | None]:
    """EXIF orientation and Pillow's format name; (1, None) when Pillow cannot open it."""
    try:
        with open_pillow(path, max_pixels) as image:
            image_format = image.format
            try:
                orientation = int(_exif(path, image).get(0x0112, 1))
            except Exception:  # damaged EXIF: the picture itself may be fine
                orientation = 1
            return orientation, image_format
    except _PILLOW_ERRORS:
        return 1, None


def _exif(path: Path, image: Image.Image) -> Image.Exif:
    """Pillow's EXIF, without the full decode its PNG reader does to look for metadata that
    could follow the pixels, when none does."""
    if image.format == "PNG" and not _png_has_late_metadata(path):
        return Image.Image.getexif(image)
    return image.getexif()


def _png_has_late_metadata(path: Path) -> bool:
    """Whether an EXIF or text chunk follows the pixels (only chunk headers are read)."""
    seen_pixels = False
    with open(path, "rb") as file:
        file.seek(len(_PNG_SIGNATURE))
        while len(header := file.read(8)) == 8:
            kind = header[4:]
            if kind == b"IEND":
                break
            seen_pixels = seen_pixels or kind == b"IDAT"
            if seen_pixels and kind in _PNG_METADATA:
                return True
            file.seek(int.from_bytes(header[:4], "big") + 4, os.SEEK_CUR)
    return False


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise VidcolorError(f"{one_line(str(path))}: cannot read ({exc.strerror})") from exc


def _png_for_opencv(data: bytes) -> bytes:
    """Critical chunks and tRNS only: libpng prints a warning on stderr for every odd ancillary
    chunk (a bad ICC profile, a bad checksum), and OpenCV's pixels use none of the others."""
    if not data.startswith(_PNG_SIGNATURE):
        return data
    kept = [_PNG_SIGNATURE]
    at = len(_PNG_SIGNATURE)
    while at + 8 <= len(data):
        length = int.from_bytes(data[at : at + 4], "big")
        kind = data[at + 4 : at + 8]
        end = at + 12 + length
        if end > len(data):
            break  # truncated: left as it is, for the decoder to refuse
        if not kind[0] & 0x20 or kind in _PNG_ANCILLARY_KEPT:  # upper case: critical
            kept.append(data[at:end])
        at = end
        if kind == b"IEND":
            return b"".join(kept)
    kept.append(data[at:])
    return b"".join(kept)


_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # by colour type
_ADAM7 = (
    (0, 0, 8, 8),
    (4, 0, 8, 8),
    (0, 4, 4, 8),
    (2, 0, 4, 4),
    (0, 2, 2, 4),
    (1, 0, 2, 2),
    (0, 1, 1, 2),
)


def _png_pixel_bytes_missing(data: bytes) -> bool:
    """True when a PNG's compressed pixels hold fewer rows than its header declares.

    libpng, inside OpenCV, fills missing rows with black, prints "libpng error: Not enough
    image data" on stderr and reports success; counting the inflated bytes catches it.
    """
    if not data.startswith(_PNG_SIGNATURE) or data[12:16] != b"IHDR" or len(data) < 33:
        return False
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    depth, colour, interlaced = data[24], data[25], data[28]
    bits = _PNG_CHANNELS.get(colour, 4) * depth
    passes = _ADAM7 if interlaced else ((0, 0, 1, 1),)
    expected = 0
    for x0, y0, dx, dy in passes:
        columns, rows = -(-max(width - x0, 0) // dx), -(-max(height - y0, 0) // dy)
        if columns and rows:
            expected += rows * (1 + -(-columns * bits // 8))
    inflater = zlib.decompressobj()
    inflated = 0
    at = len(_PNG_SIGNATURE)
    try:
        while at + 8 <= len(data):
            length = int.from_bytes(data[at : at + 4], "big")
            kind = data[at + 4 : at + 8]
            if kind == b"IDAT":
                pending = data[at + 8 : at + 8 + length]
                while pending and inflated < expected:
                    inflated += len(inflater.decompress(pending, 1 << 20))
                    pending = inflater.unconsumed_tail
            if kind == b"IEND" or inflated >= expected:
                break
            at += 12 + length
    except zlib.error:
        return True
    return inflated < expected


def _png_size(data: bytes) -> tuple[int, int] | None:
    """Width and height from a PNG's IHDR, for PNGs Pillow refuses to open (e.g. a bad CRC)."""
    if data.startswith(_PNG_SIGNATURE) and data[12:16] == b"IHDR" and len(data) >= 24:
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    return None


def _opencv_pixels(path: Path, max_pixels: int) -> np.ndarray | None:
    data = _read_bytes(path)
    if data.startswith(_JPEG_MAGIC):
        return None  # see read_image: JPEG is Pillow's
    size = _png_size(data)
    if size is not None:
        check_pixel_count(path, *size, max_pixels)
        if _png_pixel_bytes_missing(data):
            raise VidcolorError(
                f"{one_line(str(path))}: not a readable image (truncated or corrupt pixel data)"
            )
    try:
        pixels = cv2.imdecode(np.frombuffer(_png_for_opencv(data), np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error:
        return None
    if pixels is not None:  # formats whose header only OpenCV reads: checked once decoded
        check_pixel_count(path, pixels.shape[1], pixels.shape[0], max_pixels)
    return pixels


def _pillow_pixels(path: Path, max_pixels: int) -> np.ndarray:
    """JPEG, and formats OpenCV lacks (e.g. palette GIF): Pillow, already upright."""
    with open_pillow(path, max_pixels) as opened:
        image = ImageOps.exif_transpose(opened)
        mode = "RGBA" if "A" in image.getbands() or "transparency" in image.info else "RGB"
        if image.mode in ("I;16", "I;16B", "I;16L", "I"):
            return np.asarray(image, dtype=np.uint16)
        if image.mode == "L" and mode == "RGB":
            return np.asarray(image)
        return np.asarray(image.convert(mode))


def read_image(path: Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> LoadedImage:
    """Upright pixels at their own depth; refuses more than ``max_pixels`` before decoding."""
    orientation, image_format = _header(path, max_pixels)
    pixels = None
    # JPEG is 8-bit only: Pillow reads it, and refuses a truncated file, where OpenCV's
    # libjpeg prints a warning on stderr and returns a half-grey picture.
    if image_format not in _PILLOW_FORMATS:
        pixels = _opencv_pixels(path, max_pixels)
    if pixels is not None:
        if pixels.ndim == 3 and pixels.shape[2] == 4:
            pixels = cv2.cvtColor(pixels, cv2.COLOR_BGRA2RGBA)
        elif pixels.ndim == 3 and pixels.shape[2] == 3:
            pixels = cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB)
        # OpenCV's TIFF decoder turns the picture upright itself (the EXIF tag is TIFF's own).
        fix = None if image_format == "TIFF" else _ORIENTATION_FIXES.get(orientation)
        if fix is not None:
            pixels = np.ascontiguousarray(fix(pixels))
    else:
        try:
            pixels = _pillow_pixels(path, max_pixels)
        except _PILLOW_ERRORS as exc:
            raise VidcolorError(
                f"{one_line(str(path))}: not a readable image ({one_line(str(exc))})"
            ) from exc
    if pixels.dtype not in (np.uint8, np.uint16, np.float32):
        raise VidcolorError(f"{one_line(str(path))}: unsupported pixel type {pixels.dtype}")
    if pixels.ndim == 3 and pixels.shape[2] == 4:
        return LoadedImage(np.ascontiguousarray(pixels[:, :, :3]), pixels[:, :, 3].copy())
    if pixels.ndim == 3 and pixels.shape[2] == 2:  # grey + alpha
        return LoadedImage(pixels[:, :, 0].copy(), pixels[:, :, 1].copy())
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[:, :, 0]
    return LoadedImage(pixels, None)


def write_image(
    path: Path, rgb: np.ndarray, alpha: np.ndarray | None = None, overwrite: bool = False
) -> None:
    """Write atomically; 16-bit data stays 16-bit where the format allows it."""
    suffix = path.suffix.lower()
    if not suffix.isascii():  # OpenCV crashes on some non-ASCII (undecodable) extensions
        raise VidcolorError(f"{one_line(str(path))}: cannot write an image with this extension")
    if suffix in _EIGHT_BIT_ONLY and rgb.dtype != np.uint8:
        rgb = (rgb.astype(np.float32) / 257.0 + 0.5).astype(np.uint8)
        alpha = None if alpha is None else (alpha.astype(np.float32) / 257.0 + 0.5).astype(np.uint8)
    if alpha is not None and suffix in {".jpg", ".jpeg", ".bmp"}:
        alpha = None
    if alpha is not None:
        bgr = cv2.cvtColor(np.dstack([rgb, alpha.astype(rgb.dtype)]), cv2.COLOR_RGBA2BGRA)
    else:
        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    try:
        ok, encoded = cv2.imencode(suffix, bgr, _write_params(suffix))
    except cv2.error as exc:
        raise VidcolorError(
            f"{one_line(str(path))}: cannot write this image format ({exc.err})"
        ) from exc
    if not ok:
        raise VidcolorError(f"{one_line(str(path))}: cannot write an image with this extension")
    with atomic_output(path, overwrite) as tmp:
        try:
            tmp.write_bytes(encoded.tobytes())
        except OSError as exc:
            raise VidcolorError(f"{one_line(str(path))}: cannot write ({exc.strerror})") from exc


def _write_params(suffix: str) -> list[int]:
    """Only the options the format knows: OpenCV warns on stderr about the others."""
    if suffix in (".jpg", ".jpeg"):
        return [cv2.IMWRITE_JPEG_QUALITY, _JPEG_QUALITY]
    if suffix == ".webp":
        return [cv2.IMWRITE_WEBP_QUALITY, _JPEG_QUALITY]
    return []
