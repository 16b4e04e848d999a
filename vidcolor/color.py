"""CIE Lab conversions shared by training and inference (OpenCV does the maths).

All functions take and return float32 arrays: RGB in 0..1 (sRGB, gamma-encoded), L in 0..100,
a and b in Lab units. Keeping one implementation means the model sees at inference exactly the
L it was trained on.
"""

from __future__ import annotations

import cv2
import numpy as np


def as_float_rgb(image: np.ndarray) -> np.ndarray:
    """Integer or float image (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) to float32 RGB in 0..1."""
    if np.issubdtype(image.dtype, np.integer):
        scale = np.float32(1.0 / np.iinfo(image.dtype).max)
        image = np.multiply(image, scale, dtype=np.float32)  # one pass, not astype then divide
    else:
        image = np.clip(image.astype(np.float32, copy=False), 0.0, 1.0)
    if image.ndim == 2:
        image = image[:, :, None]
    channels = image.shape[2]
    if channels == 1:
        return np.repeat(image, 3, axis=2)
    if channels == 4:
        return np.ascontiguousarray(image[:, :, :3])
    if channels == 3:
        return image
    raise ValueError(f"unsupported channel count {channels}")


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """float32 RGB (H, W, 3) in 0..1 to Lab (H, W, 3)."""
    return cv2.cvtColor(np.ascontiguousarray(rgb, dtype=np.float32), cv2.COLOR_RGB2Lab)


def luminance(image: np.ndarray) -> np.ndarray:
    """CIE L (H, W) of any image: colour or tinted input (sepia prints) keeps only its lightness.

    Grey integer pictures (R = G = B: most black-and-white films and scans) take a table of
    the L of each grey level, with the very same values, four times faster at 480p.
    """
    grey = _grey_plane(image)
    if grey is not None:
        return _grey_luminance(grey)
    return cv2.extractChannel(rgb_to_lab(as_float_rgb(image)), 0)


def _grey_plane(image: np.ndarray) -> np.ndarray | None:
    """The one plane of an 8- or 16-bit picture whose colour channels are equal, else None."""
    if image.dtype not in (np.uint8, np.uint16):
        return None
    if image.ndim == 2:
        return image
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        return None
    if image.shape[2] == 1:
        return image[:, :, 0]
    red, green, blue = (image[:, :, c] for c in range(3))
    if cv2.countNonZero(cv2.absdiff(red, green)) or cv2.countNonZero(cv2.absdiff(green, blue)):
        return None
    return red


def _grey_luminance(grey: np.ndarray) -> np.ndarray:
    table = _grey_l_table(grey.dtype)
    if grey.dtype == np.uint8:
        return cv2.LUT(np.ascontiguousarray(grey), table)
    return table[grey]


_GREY_L: dict[np.dtype, np.ndarray] = {}


def _grey_l_table(dtype: np.dtype) -> np.ndarray:
    """L of every grey level of ``dtype``, computed by the general path itself."""
    if dtype not in _GREY_L:
        levels = np.arange(np.iinfo(dtype).max + 1, dtype=dtype)
        rgb = np.repeat(levels[:, None, None], 3, axis=2)
        _GREY_L[dtype] = rgb_to_lab(as_float_rgb(rgb))[:, 0, 0].copy()
    return _GREY_L[dtype]


def lab_to_rgb(lab: np.ndarray) -> np.ndarray:
    """Lab (H, W, 3) to float32 RGB in 0..1 (out-of-gamut colours clipped)."""
    rgb = cv2.cvtColor(np.ascontiguousarray(lab, dtype=np.float32), cv2.COLOR_Lab2RGB)
    return np.clip(rgb, 0.0, 1.0, out=rgb)


def resize_plane(plane: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize a (H, W) or (H, W, C) float32 plane: area filter to shrink, bilinear to grow."""
    h, w = plane.shape[:2]
    if (w, h) == (width, height):
        return plane
    shrinking = width < w and height < h
    interp = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(plane, (width, height), interpolation=interp)


def join_lab(lum: np.ndarray, ab: np.ndarray) -> np.ndarray:
    """Full-resolution L (H, W) + a,b at any size (h, w, 2) -> float32 RGB (H, W, 3) in 0..1."""
    height, width = lum.shape
    ab_full = resize_plane(ab.astype(np.float32, copy=False), width, height)
    lab = np.empty((height, width, 3), dtype=np.float32)
    lab[:, :, 0] = lum
    lab[:, :, 1:] = ab_full
    return lab_to_rgb(lab)


def join_lab_uint(
    lum: np.ndarray, ab: np.ndarray, dtype: type[np.integer] = np.uint8
) -> np.ndarray:
    """``to_uint(join_lab(lum, ab), dtype)`` in three OpenCV passes over the full frame.

    Merge, Lab to RGB, then scale with saturation (clipping) and rounding in one step: about
    three times faster than the numpy steps at 480p (benchmarks/stages.py measures both).
    """
    height, width = lum.shape
    ab_full = resize_plane(ab.astype(np.float32, copy=False), width, height)
    lab = cv2.merge([np.asarray(lum, np.float32), ab_full])
    rgb = cv2.cvtColor(lab, cv2.COLOR_Lab2RGB)
    depth = cv2.CV_8U if dtype == np.uint8 else cv2.CV_16U
    scale = float(np.iinfo(dtype).max)
    return cv2.addWeighted(rgb, scale, rgb, 0.0, 0.0, dtype=depth)


def to_uint(rgb: np.ndarray, dtype: type[np.integer] = np.uint8) -> np.ndarray:
    """float RGB in 0..1 to rounded integers of the given depth."""
    scale = float(np.iinfo(dtype).max)
    return (np.clip(rgb, 0.0, 1.0) * scale + 0.5).astype(dtype)
