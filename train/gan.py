"""pix2pix's conditional PatchGAN discriminator and the two GAN objectives (vanilla, LSGAN).

The discriminator judges 70x70 patches of (L, a, b) rather than whole pictures: colour realism is
local texture, and a patch critic has few parameters and works at any size. It sees L beside
a,b (conditional GAN), so it punishes colours that do not fit the luminance, not only dull ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vidcolor.models.base import AB_SCALE
from vidcolor.models.config import ConfigError, fields_from_mapping, is_int, positive_int, require
from vidcolor.models.pix2pix import init_pix2pix_weights

GAN_KINDS = ("vanilla", "lsgan")


@dataclass(frozen=True)
class DiscriminatorConfig:
    """pix2pix's defaults: 64 filters, 3 strided layers (a 70x70 receptive field)."""

    ndf: int = 64
    n_layers: int = 3

    def __post_init__(self) -> None:
        require(
            positive_int(self.ndf),
            f"discriminator ndf must be a positive integer, not {self.ndf!r}",
        )
        require(
            is_int(self.n_layers) and 1 <= self.n_layers <= 6,
            f"discriminator n_layers must be 1 to 6, not {self.n_layers!r}",
        )


class PatchDiscriminator(nn.Module):
    """pix2pix's ``NLayerDiscriminator``: (N, 1, h, w) logits, one per overlapping patch.

    Input is L (N, 1, H, W) in 0..100 and a,b (N, 2, H, W) in Lab units, scaled to about
    [-1, 1] as pix2pix's colourisation does. A 256x256 input gives 30x30 logits.
    """

    def __init__(self, ndf: int = 64, n_layers: int = 3):
        super().__init__()
        self.config = DiscriminatorConfig(ndf, n_layers)
        layers: list[nn.Module] = [nn.Conv2d(3, ndf, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
        mult = 1
        for n in range(1, n_layers + 1):
            prev, mult = mult, min(2**n, 8)
            stride = 2 if n < n_layers else 1
            layers += [
                nn.Conv2d(ndf * prev, ndf * mult, 4, stride=stride, padding=1, bias=False),
                nn.BatchNorm2d(ndf * mult),
                nn.LeakyReLU(0.2),
            ]
        layers.append(nn.Conv2d(ndf * mult, 1, 4, stride=1, padding=1))
        self.model = nn.Sequential(*layers)
        init_pix2pix_weights(self)

    def forward(self, lum: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
        return self.model(torch.cat([lum / 50.0 - 1.0, ab / AB_SCALE], dim=1))

    def receptive_field(self) -> int:
        """Side in pixels of the input patch behind one output logit."""
        field = 1
        for m in reversed(self.model):
            if isinstance(m, nn.Conv2d):
                field = (field - 1) * m.stride[0] + m.kernel_size[0]
        return field

    def config_dict(self) -> dict[str, Any]:
        return asdict(self.config)


def build_discriminator(config: Mapping[str, Any] | None = None) -> PatchDiscriminator:
    """A discriminator from a recipe's mapping (``ndf``, ``n_layers``); unknown keys fail."""
    values = fields_from_mapping(DiscriminatorConfig, config or {}, "discriminator")
    return PatchDiscriminator(**values)


def check_gan(gan: object) -> str:
    if gan not in GAN_KINDS:
        raise ConfigError(f"unknown gan {gan!r}; use {' or '.join(GAN_KINDS)}")
    return str(gan)


def gan_loss(prediction: torch.Tensor, real: bool, gan: str) -> torch.Tensor:
    """How far logits are from saying ``real``: BCE (vanilla) or squared error (LSGAN)."""
    target = torch.full_like(prediction, 1.0 if real else 0.0)
    if check_gan(gan) == "vanilla":
        return F.binary_cross_entropy_with_logits(prediction, target)
    return F.mse_loss(prediction, target)


def discriminator_loss(
    discriminator: nn.Module,
    lum: torch.Tensor,
    real_ab: torch.Tensor,
    fake_ab: torch.Tensor,
    gan: str,
) -> torch.Tensor:
    """pix2pix's discriminator objective: half the sum of the real and the fake terms.

    ``fake_ab`` is detached here, so the discriminator step never reaches the generator.
    """
    real = gan_loss(discriminator(lum, real_ab), True, gan)
    fake = gan_loss(discriminator(lum, fake_ab.detach()), False, gan)
    return 0.5 * (real + fake)
