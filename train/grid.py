"""Before/after grids: a fixed set of validation photos as grey | model | truth, one per row.

The model's column is made by ``vidcolor.api.colorize_array`` through the engine, the same path
as ``vidcolor photo.jpg``, so a grid shows what a user would get from the weights of that step.
Every validation pass writes one (``OUT/<name>/grids/step-NNNNNNNN.png``): the same photos at
every step, so the files can be flipped through to watch the colours come.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from vidcolor.api import colorize_array
from vidcolor.color import as_float_rgb, to_uint
from vidcolor.engines.base import Engine
from vidcolor.media.images import write_image

from .evaluate import grey_rgb

COLUMNS = ("grey", "model", "truth")
_HEADER = 22
_GAP = 4


def _cell(rgb: np.ndarray, height: int, width: int) -> np.ndarray:
    """uint8 RGB resized to ``height`` (aspect kept), centred on a white ``width`` canvas."""
    h, w = rgb.shape[:2]
    new_w = max(1, min(width, round(w * height / h)))
    small = cv2.resize(to_uint(rgb), (new_w, height), interpolation=cv2.INTER_AREA)
    canvas = np.full((height, width, 3), 255, np.uint8)
    left = (width - new_w) // 2
    canvas[:, left : left + new_w] = small
    return canvas


def before_after_grid(
    engine: Engine,
    photos: Sequence[tuple[str, np.ndarray]],
    render_size: int,
    cell: int = 128,
) -> np.ndarray:
    """uint8 RGB: a header, then one row per photo of grey | model | truth cells.

    Cells are ``cell`` pixels high and as wide as the widest photo needs (at most twice
    that: panoramas are squeezed rather than making the grid enormous).
    """
    shapes = [pixels.shape[:2] for _, pixels in photos]
    width = max([min(2 * cell, round(w * cell / h)) for h, w in shapes] or [cell])
    full = 3 * width + 2 * _GAP
    rows = []
    for _, pixels in photos:
        truth = as_float_rgb(pixels)
        model = colorize_array(pixels, engine, render_size)
        cells = [_cell(image, cell, width) for image in (grey_rgb(truth), model, truth)]
        row = np.full((cell + _GAP, full, 3), 255, np.uint8)
        for i, image in enumerate(cells):
            x = i * (width + _GAP)
            row[:cell, x : x + width] = image
        rows.append(row)
    header = np.full((_HEADER, full, 3), 255, np.uint8)
    for i, label in enumerate(COLUMNS):
        x = max(0, i * (width + _GAP) + width // 2 - 4 * len(label))
        cv2.putText(header, label, (x, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1)
    return np.concatenate([header, *rows], axis=0)


def write_grid(path: Path, grid: np.ndarray) -> None:
    """Atomically, like every other vidcolor output (replacing a grid of an earlier try)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_image(path, grid, overwrite=True)
