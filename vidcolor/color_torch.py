"""The full-resolution Lab join in PyTorch, for batches of frames on the engine's GPU.

On a GPU the model is fast enough that joining colour with 1080p luminance on the CPU (resize,
Lab to RGB, rounding: about 25 ms a frame) would bound the whole film; here the same maths
runs batched where the a,b already are. It follows OpenCV's float Lab-to-RGB conversion
(``color.lab_to_rgb``: D65 white, its XYZ-to-sRGB matrix, clipping before the sRGB curve), so
the two paths agree within one 8-bit level (tests/test_color.py checks this on the CPU).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from vidcolor.color import resize_plane

# OpenCV's constants (imgproc/src/color_lab.cpp): XYZ -> linear sRGB, and the D65 white point.
_XYZ_TO_RGB = (
    (3.240479, -1.53715, -0.498535),
    (-0.969256, 1.875991, 0.041556),
    (0.055648, -0.204043, 1.057311),
)
_D65 = (0.950456, 1.0, 1.088754)
_EPSILON_L = 0.008856 * 903.3
_EPSILON_F = 7.787 * 0.008856 + 16.0 / 116.0


def _f_inverse(f: torch.Tensor) -> torch.Tensor:
    return torch.where(f <= _EPSILON_F, (f - 16.0 / 116.0) / 7.787, f * f * f)


def lab_to_rgb(lab: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) float32 Lab -> (N, 3, H, W) sRGB in 0..1, as OpenCV's float conversion."""
    lum, a, b = lab[:, 0], lab[:, 1], lab[:, 2]
    dark = lum <= _EPSILON_L
    fy = torch.where(dark, 7.787 * (lum / 903.3) + 16.0 / 116.0, (lum + 16.0) / 116.0)
    y = torch.where(dark, lum / 903.3, fy * fy * fy)
    x = _f_inverse(fy + a / 500.0) * _D65[0]
    z = _f_inverse(fy - b / 200.0) * _D65[2]
    y = y * _D65[1]
    channels = []
    for row in _XYZ_TO_RGB:
        linear = (row[0] * x + row[1] * y + row[2] * z).clamp_(0.0, 1.0)
        channels.append(
            torch.where(linear <= 0.0031308, 12.92 * linear, 1.055 * linear.pow(1.0 / 2.4) - 0.055)
        )
    return torch.stack(channels, dim=1)


@torch.inference_mode()
def join_lab_batch(
    luminance: list[np.ndarray], ab: list[np.ndarray], device: str, dtype: type[np.integer]
) -> list[np.ndarray]:
    """Full-resolution L (H, W) and render-size a,b (h, w, 2) of same-sized frames, joined on
    ``device``: integer RGB (H, W, 3) of ``dtype`` per frame, as ``color.join_lab_uint``."""
    height, width = luminance[0].shape
    h, w = ab[0].shape[:2]
    if h > height and w > width:  # a tiny film: shrink on the CPU, with OpenCV's area filter
        ab = [resize_plane(plane, width, height) for plane in ab]
    lum = torch.from_numpy(np.stack(luminance)).to(device, non_blocking=True)
    chroma = torch.from_numpy(np.stack(ab)).to(device, non_blocking=True).permute(0, 3, 1, 2)
    if chroma.shape[-2:] != (height, width):
        # Growing as cv2.INTER_LINEAR does: pixel centres, no corner alignment.
        chroma = F.interpolate(chroma, size=(height, width), mode="bilinear", align_corners=False)
    rgb = lab_to_rgb(torch.cat([lum[:, None], chroma], dim=1))
    scale = float(np.iinfo(dtype).max)
    levels = (rgb * scale).round_().clamp_(0, scale)
    levels = levels.to(torch.uint8 if dtype == np.uint8 else torch.int32)
    frames = levels.permute(0, 2, 3, 1).contiguous().cpu().numpy()
    return [frame.astype(dtype, copy=False) for frame in frames]
