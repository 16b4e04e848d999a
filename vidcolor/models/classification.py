"""Colour as classification (Zhang et al. 2016), seed 4: logits over quantised ab bins.

Regression to the mean of plausible colours gives brown; a distribution over colour bins keeps
several hypotheses apart. ``forward`` still returns a,b (every engine maps L to ab): it decodes
the logits with the annealed mean, a softmax at temperature T (0.38 in the paper) that moves
between the mean (T=1, safe but dull) and the mode (T->0, vivid but patchy). Logits are predicted
at stride 4, as in the paper, and the decoded a,b are upsampled bilinearly to the input's size.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vidcolor.models.base import Generator
from vidcolor.models.config import ArchConfig, require, require_ints
from vidcolor.models.efficientnet_lite import EfficientNetLite0Encoder, lite0_imagenet_state
from vidcolor.models.generator import UpBlock

# sRGB -> XYZ (D65) and the reference white, as OpenCV's Lab conversion uses them.
_RGB_TO_XYZ = np.array(
    [
        [0.412453, 0.357580, 0.180423],
        [0.212671, 0.715160, 0.072169],
        [0.019334, 0.119193, 0.950227],
    ]
)
_WHITE = np.array([0.950456, 1.0, 1.088754])


def _srgb_to_ab(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) sRGB in 0..1 (float64) -> (..., 2) CIE a,b."""
    linear = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    xyz = linear @ _RGB_TO_XYZ.T / _WHITE
    d = 6.0 / 29.0
    f = np.where(xyz > d**3, np.cbrt(xyz), xyz / (3 * d * d) + 4.0 / 29.0)
    return np.stack([500.0 * (f[..., 0] - f[..., 1]), 200.0 * (f[..., 1] - f[..., 2])], -1)


@lru_cache(maxsize=8)
def _in_gamut_bins(bin_size: int) -> np.ndarray:
    # The ab footprint of the sRGB cube is the image of its surface (plus a coarse interior
    # lattice, for safety); 257 samples per edge find every cell, more find no new one.
    levels = np.linspace(0.0, 1.0, 257)
    u, v = (g.ravel() for g in np.meshgrid(levels, levels, indexing="ij"))
    samples = []
    for axis in range(3):
        for value in (0.0, 1.0):
            columns = [u, v]
            columns.insert(axis, np.full_like(u, value))
            samples.append(np.stack(columns, -1))
    coarse = np.linspace(0.0, 1.0, 33)
    samples.append(np.stack(np.meshgrid(coarse, coarse, coarse, indexing="ij"), -1).reshape(-1, 3))
    cells = np.floor(_srgb_to_ab(np.concatenate(samples)) / bin_size + 0.5).astype(np.int64)
    low = cells.min(axis=0)
    hit = np.zeros(tuple(cells.max(axis=0) - low + 1), dtype=bool)
    hit[cells[:, 0] - low[0], cells[:, 1] - low[1]] = True
    return ((np.argwhere(hit) + low) * bin_size).astype(np.float32)  # sorted by a, then b


def in_gamut_bins(bin_size: int = 10) -> torch.Tensor:
    """(Q, 2) centres (a, b) of the grid cells (multiples of ``bin_size``) that sRGB reaches.

    Cell ``c`` covers [c - bin_size/2, c + bin_size/2) on each axis; (0, 0), grey, is a centre.
    Sorted by a, then b. ``bin_size`` 10 gives Q = 262 (Zhang et al. had 313 with a looser
    gamut). Models store their centres with their weights, so a file never depends on this.
    """
    return torch.from_numpy(_in_gamut_bins(int(bin_size)).copy())


def annealed_mean(logits: torch.Tensor, centres: torch.Tensor, temperature: float) -> torch.Tensor:
    """(N, Q, H, W) logits -> (N, 2, H, W) a,b: the mean of softmax(logits / T) over centres.

    softmax(log p / T) is Zhang et al.'s re-normalised p**(1/T); on logits that is logits / T.
    A 1x1 convolution does the weighted sum, which every export path supports.
    """
    probs = torch.softmax(logits / temperature, dim=1)
    weight = centres.to(probs.dtype).t().reshape(2, -1, 1, 1)
    return F.conv2d(probs, weight)


@dataclass(frozen=True)
class ClassificationConfig(ArchConfig):
    ARCH = "unet-classification"
    arch: str = ARCH
    decoder_channels: tuple[int, ...] = (96, 64, 48)
    bin_size: int = 10
    temperature: float = 0.38

    def check(self) -> None:
        require_ints("decoder_channels", self.decoder_channels, range(3, 4))
        require(5 <= self.bin_size <= 40, f"bin_size must be 5 to 40, not {self.bin_size!r}")
        require(
            0.0 < self.temperature <= 1.0,
            f"temperature must be in (0, 1], not {self.temperature!r}",
        )


class ClassificationUNet(Generator):
    """EfficientNet-Lite0 U-Net (the default's encoder) whose head scores Q colour bins."""

    outputs = ("ab", "logits")
    bin_centers: torch.Tensor  # (Q, 2), saved with the weights

    def __init__(self, config: ClassificationConfig | None = None):
        super().__init__()
        self.config: ClassificationConfig = config or ClassificationConfig()
        self.encoder = EfficientNetLite0Encoder(in_channels=1)
        skips = self.encoder.skip_channels  # strides 2, 4, 8, 16, 32
        dec = self.config.decoder_channels
        self.up16 = UpBlock(skips[4], skips[3], dec[0], convs=2)
        self.up8 = UpBlock(dec[0], skips[2], dec[1], convs=2)
        self.up4 = UpBlock(dec[1], skips[1], dec[2], convs=2)
        centres = in_gamut_bins(self.config.bin_size)
        self.head = nn.Conv2d(dec[2], len(centres), 1)
        self.register_buffer("bin_centers", centres)

    def logits(self, lum: torch.Tensor) -> torch.Tensor:
        """(N, Q, H/4, W/4) unnormalised scores over ``bin_centers``."""
        s2, s4, s8, s16, s32 = self.encoder((lum - 50.0) / 25.0)
        x = self.up16(s32, s16)
        x = self.up8(x, s8)
        x = self.up4(x, s4)
        return self.head(x)

    def decode(self, logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        # In fp32 whatever the network runs in: a softmax over bins can overflow fp16.
        ab = annealed_mean(logits.float(), self.bin_centers.float(), self.config.temperature)
        return F.interpolate(ab, size=size, mode="bilinear", align_corners=False)

    def forward(self, lum: torch.Tensor) -> torch.Tensor:
        return self.decode(self.logits(lum), (lum.shape[-2], lum.shape[-1]))

    def train_outputs(self, lum: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = self.logits(lum)
        return {"ab": self.decode(logits, (lum.shape[-2], lum.shape[-1])), "logits": logits}

    def encoder_parameters(self) -> list[nn.Parameter]:
        return list(self.encoder.parameters())

    def load_pretrained(self) -> None:
        self.encoder.load_imagenet_state_dict(lite0_imagenet_state())
