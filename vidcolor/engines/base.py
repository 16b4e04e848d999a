"""The one interface every inference backend offers; the pipeline never knows which it holds."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Engine(Protocol):
    """Maps a batch of CIE L to a,b.

    ``infer`` takes float32 (N, 1, H, W) L in 0..100, H and W multiples of 32, and returns
    float32 (N, 2, H, W) a,b in Lab units.
    """

    name: str
    device: str

    def infer(self, batch_l: np.ndarray) -> np.ndarray: ...
