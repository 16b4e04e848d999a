"""Still images in and out: 8- and 16-bit, palette, grey, alpha, EXIF orientation.

OpenCV reads and writes the pixels (it keeps 16 bits, Pillow's RGB path does not); Pillow reads
the EXIF orientation so that scans come out upright, as every viewer showed them.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps

from vidcolor.atomic import atomic_output
from vidcolor.errors import VidcolorError

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


@dataclass
class LoadedImage:
    rgb: np.ndarray  # (H, W, 3) or (H, W) uint8 / uint16 / float32
    alpha: np.ndarray | None  # (H, W) of the same dtype, or None


@contextmanager
def open_pillow(path: Path) -> Iterator[Image.Image]:
    """Pillow without its large-scan warning (big archive scans are normal here)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with Image.open(path) as image:
            yield image


def _orientation_and_format(path: Path) -> tuple[int, str | None]:
    try:
        with open_pillow(path) as image:
            return int(image.getexif().get(0x0112, 1)), image.format
    except (OSError, ValueError, Image.DecompressionBombError):
        return 1, None


def _pillow_pixels(path: Path) -> np.ndarray:
    """JPEG, and formats OpenCV lacks (e.g. palette GIF): Pillow, already upright."""
    with open_pillow(path) as opened:
        image = ImageOps.exif_transpose(opened)
        mode = "RGBA" if "A" in image.getbands() or "transparency" in image.info else "RGB"
        if image.mode in ("I;16", "I;16B", "I;16L", "I"):
            return np.asarray(image, dtype=np.uint16)
        if image.mode == "L" and mode == "RGB":
            return np.asarray(image)
        return np.asarray(image.convert(mode))


def read_image(path: Path) -> LoadedImage:
    orientation, image_format = _orientation_and_format(path)
    pixels = None
    # JPEG is 8-bit only: Pillow reads it, and refuses a truncated file, where OpenCV's
    # libjpeg prints a warning on stderr and returns a half-grey picture.
    if image_format not in _PILLOW_FORMATS:
        try:
            pixels = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        except cv2.error:
            pixels = None
    if pixels is not None:
        if pixels.ndim == 3 and pixels.shape[2] == 4:
            pixels = cv2.cvtColor(pixels, cv2.COLOR_BGRA2RGBA)
        elif pixels.ndim == 3 and pixels.shape[2] == 3:
            pixels = cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB)
        fix = _ORIENTATION_FIXES.get(orientation)
        if fix is not None:
            pixels = np.ascontiguousarray(fix(pixels))
    else:
        try:
            pixels = _pillow_pixels(path)
        except (OSError, ValueError) as exc:
            raise VidcolorError(f"{path}: not a readable image ({exc})") from exc
    if pixels.dtype not in (np.uint8, np.uint16, np.float32):
        raise VidcolorError(f"{path}: unsupported pixel type {pixels.dtype}")
    if pixels.ndim == 3 and pixels.shape[2] == 4:
        return LoadedImage(np.ascontiguousarray(pixels[:, :, :3]), pixels[:, :, 3].copy())
    if pixels.ndim == 3 and pixels.shape[2] == 2:  # grey + alpha
        return LoadedImage(pixels[:, :, 0].copy(), pixels[:, :, 1].copy())
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[:, :, 0]
    return LoadedImage(pixels, None)


def write_image(path: Path, rgb: np.ndarray, alpha: np.ndarray | None = None) -> None:
    """Write atomically; 16-bit data stays 16-bit where the format allows it."""
    if path.suffix.lower() in _EIGHT_BIT_ONLY and rgb.dtype != np.uint8:
        rgb = (rgb.astype(np.float32) / 257.0 + 0.5).astype(np.uint8)
        alpha = None if alpha is None else (alpha.astype(np.float32) / 257.0 + 0.5).astype(np.uint8)
    if alpha is not None and path.suffix.lower() in {".jpg", ".jpeg", ".bmp"}:
        alpha = None
    if alpha is not None:
        bgr = cv2.cvtColor(np.dstack([rgb, alpha.astype(rgb.dtype)]), cv2.COLOR_RGBA2BGRA)
    else:
        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    params = _write_params(path.suffix.lower())
    with atomic_output(path) as tmp:
        try:
            ok = cv2.imwrite(str(tmp), bgr, params)
        except cv2.error as exc:
            raise VidcolorError(f"{path}: cannot write this image format ({exc.err})") from exc
        if not ok:
            raise VidcolorError(f"{path}: cannot write an image with this extension")


def _write_params(suffix: str) -> list[int]:
    """Only the options the format knows: OpenCV warns on stderr about the others."""
    if suffix in (".jpg", ".jpeg"):
        return [cv2.IMWRITE_JPEG_QUALITY, _JPEG_QUALITY]
    if suffix == ".webp":
        return [cv2.IMWRITE_WEBP_QUALITY, _JPEG_QUALITY]
    return []
