"""Optical flow (OpenCV's DIS) and warping, the motion half of the temporal stage.

Flow is estimated on CIE L (0..100) turned into 8-bit, the only input DIS takes. A flow field
``flow`` of frame A towards frame B holds, for each pixel x of A, the displacement to where that
point is in B: ``warp(image_of_B, flow)`` brings B's content onto A's pixel grid.
"""

from __future__ import annotations

import threading

import cv2
import numpy as np

PRESETS = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}


def to_u8(lum: np.ndarray) -> np.ndarray:
    """CIE L in 0..100 to the 8-bit grey DIS wants (rounded, clipped)."""
    return np.clip(lum * 2.55 + 0.5, 0, 255).astype(np.uint8)


class FlowEstimator:
    """DIS optical flow with one OpenCV instance per thread (an instance keeps scratch state)."""

    def __init__(self, preset: str = "medium"):
        if preset not in PRESETS:
            raise ValueError(f"unknown DIS preset {preset!r}")
        self.preset = preset
        self._local = threading.local()

    def _dis(self) -> cv2.DISOpticalFlow:
        dis = getattr(self._local, "dis", None)
        if dis is None:
            dis = self._local.dis = cv2.DISOpticalFlow_create(PRESETS[self.preset])
        return dis

    def __call__(self, source: np.ndarray, target: np.ndarray) -> np.ndarray:
        """Flow (H, W, 2) float32 from ``source`` to ``target`` (both L planes or 8-bit grey)."""
        a = source if source.dtype == np.uint8 else to_u8(source)
        b = target if target.dtype == np.uint8 else to_u8(target)
        return self._dis().calc(a, b, None)


def _grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    return np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))


_GRIDS: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}


def sampling_maps(flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Absolute sampling coordinates (x + u, y + v) for ``cv2.remap``."""
    height, width = flow.shape[:2]
    grid = _GRIDS.get((height, width))
    if grid is None:
        grid = _GRIDS[(height, width)] = _grid(height, width)
    return grid[0] + flow[..., 0], grid[1] + flow[..., 1]


def warp(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """Sample ``image`` at x + flow(x) (bilinear; the border repeats): B's content on A's grid."""
    return remap(image, sampling_maps(flow))


def remap(image: np.ndarray, maps: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """``warp`` with the sampling maps computed once for several images."""
    return cv2.remap(
        np.ascontiguousarray(image, dtype=np.float32),
        maps[0],
        maps[1],
        interpolation=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )


def fb_mismatch(
    forward: np.ndarray, backward: np.ndarray, maps: tuple[np.ndarray, np.ndarray] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Forward-backward check of ``forward`` (A to B) against ``backward`` (B to A).

    Returns the squared length of forward + backward-at-the-arrival-point (0 where the two
    flows agree) and the tolerance Sundaram et al. (2010) allow for it, which grows with the
    motion: 0.01 (|w|^2 + |w_back|^2) + 0.5 px^2. ``maps`` are ``sampling_maps(forward)``.
    """
    back = remap(backward, maps if maps is not None else sampling_maps(forward))
    fx, fy = cv2.split(forward)
    bx, by = cv2.split(back)
    mismatch = cv2.magnitude(fx + bx, fy + by)
    mismatch *= mismatch
    f_len, b_len = cv2.magnitude(fx, fy), cv2.magnitude(bx, by)
    tolerance = 0.01 * (f_len * f_len + b_len * b_len) + 0.5
    return mismatch, tolerance


def motion_boundaries(flow: np.ndarray) -> np.ndarray:
    """Where the flow's gradient is steep (Sundaram et al.): edges of moving objects."""
    du_dy, du_dx = np.gradient(flow[..., 0])
    dv_dy, dv_dx = np.gradient(flow[..., 1])
    steep = du_dx**2 + du_dy**2 + dv_dx**2 + dv_dy**2
    return steep > 0.01 * (flow**2).sum(axis=2) + 0.002


def non_occluded(forward: np.ndarray, backward: np.ndarray) -> np.ndarray:
    """Pixels of A that B shows too: the mask of Lai et al. (2018), as a bool (H, W) array.

    A pixel fails where forward and backward flow disagree (occlusion) or on a motion boundary.
    """
    mismatch, tolerance = fb_mismatch(forward, backward)
    return ~((mismatch > tolerance) | motion_boundaries(forward))
