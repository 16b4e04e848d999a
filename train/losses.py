"""Losses for ab regression.

Plain L1 on ab drifts to the desaturated median colour (the "sepia" look of the student
reports). Weighting each pixel by the rarity of its true colour, as in Zhang et al. 2016
(class rebalancing), keeps rare saturated colours from being averaged away.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.ndimage import gaussian_filter

from vidcolor.models.generator import AB_SCALE

BIN_SIZE = 10.0
BIN_COUNT = int(2 * AB_SCALE / BIN_SIZE)  # 22 x 22 grid over a,b in [-110, 110)


def ab_bin_index(ab: torch.Tensor) -> torch.Tensor:
    """(N, 2, H, W) ab -> (N, H, W) flat bin indices."""
    idx = ((ab + AB_SCALE) / BIN_SIZE).floor().clamp(0, BIN_COUNT - 1).long()
    return idx[:, 0] * BIN_COUNT + idx[:, 1]


def rebalancing_weights(ab_samples: torch.Tensor, mix: float, power: float) -> torch.Tensor:
    """Per-bin weights from the empirical ab distribution (Zhang et al.'s recipe, softened).

    w = ((1 - mix) * p_smoothed + mix / Q) ** -power, normalised so that E_p[w] = 1.
    """
    counts = torch.bincount(ab_bin_index(ab_samples).flatten(), minlength=BIN_COUNT**2)
    p = counts.double().numpy().reshape(BIN_COUNT, BIN_COUNT)
    p = gaussian_filter(p / p.sum(), sigma=0.5)
    in_gamut = p > 1e-7
    q = int(in_gamut.sum())
    w = np.where(in_gamut, ((1 - mix) * p + mix / q) ** -power, 0.0)
    w /= (p * w).sum()
    return torch.from_numpy(w.reshape(-1)).float()


class RebalancedL1:
    def __init__(self, weights: torch.Tensor | None):
        self.weights = weights

    def __call__(self, pred_ab: torch.Tensor, true_ab: torch.Tensor) -> torch.Tensor:
        per_pixel = (pred_ab - true_ab).abs().sum(dim=1) / AB_SCALE
        if self.weights is None:
            return per_pixel.mean()
        return (per_pixel * self.weights[ab_bin_index(true_ab)]).mean()
