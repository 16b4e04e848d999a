"""Plain U-Nets trained from scratch: the seeds' baselines (seed 1 and seed 5).

``unet`` is Ronneberger et al. 2015's network (double 3x3 convolutions, max-pool down, 2x2
transposed convolutions up, skips by concatenation) with batch norm and narrower layers, so it
trains on a CPU. ``dilated-cunet`` keeps the same encoder and decoder but replaces the deepest
levels by a stack of dilated convolutions at a fixed resolution (as in Iizuka et al. 2016's
mid-level network): a wide receptive field for global colour context without more downsampling.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from vidcolor.models.base import AB_SCALE, Generator, conv_bn_relu
from vidcolor.models.config import ArchConfig, require_ints


@dataclass(frozen=True)
class UNetConfig(ArchConfig):
    """``channels[i]`` is the width at stride 2**i; the last one is the bottleneck."""

    ARCH = "unet"
    arch: str = ARCH
    channels: tuple[int, ...] = (16, 32, 64, 128, 256)

    def check(self) -> None:
        # At most 5 poolings: any side that is a multiple of 32 (the engine contract) works.
        require_ints("channels", self.channels, range(2, 7))


@dataclass(frozen=True)
class DilatedUNetConfig(UNetConfig):
    """U-Net down to stride 2**(len(channels)-1), then dilated 3x3 convolutions there."""

    ARCH = "dilated-cunet"
    arch: str = ARCH
    channels: tuple[int, ...] = (16, 32, 64, 128)
    dilations: tuple[int, ...] = (2, 4, 8, 16)

    def check(self) -> None:
        super().check()
        require_ints("dilations", self.dilations, range(1, 17))


def double_conv(in_ch: int, out_ch: int) -> nn.Sequential:
    return nn.Sequential(conv_bn_relu(in_ch, out_ch), conv_bn_relu(out_ch, out_ch))


class UNet(Generator):
    """Ronneberger's U-Net predicting a,b (scaled by 1/110) from L."""

    config_class: ClassVar[type[UNetConfig]] = UNetConfig

    def __init__(self, config: UNetConfig | None = None):
        super().__init__()
        self.config: UNetConfig = config or self.config_class()
        ch = self.config.channels
        levels = len(ch) - 1
        self.down = nn.ModuleList(
            double_conv(1 if i == 0 else ch[i - 1], ch[i]) for i in range(levels)
        )
        self.pool = nn.MaxPool2d(2)
        self.bottleneck = self._bottleneck(ch[-2], ch[-1])
        self.up = nn.ModuleList(
            nn.ConvTranspose2d(ch[i + 1], ch[i], 2, stride=2) for i in reversed(range(levels))
        )
        self.decode = nn.ModuleList(double_conv(2 * ch[i], ch[i]) for i in reversed(range(levels)))
        self.head = nn.Conv2d(ch[0], 2, 1)

    def _bottleneck(self, in_ch: int, out_ch: int) -> nn.Module:
        return double_conv(in_ch, out_ch)

    def forward(self, lum: torch.Tensor) -> torch.Tensor:
        x = (lum - 50.0) / 50.0
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = self.pool(x)
        x = self.bottleneck(x)
        for up, block, skip in zip(self.up, self.decode, reversed(skips), strict=True):
            x = block(torch.cat([up(x), skip], dim=1))
        return self.head(x) * AB_SCALE


class DilatedUNet(UNet):
    """The U-Net with a dilated-convolution bottleneck (seed 5's CU-Net)."""

    config_class = DilatedUNetConfig

    def _bottleneck(self, in_ch: int, out_ch: int) -> nn.Module:
        assert isinstance(self.config, DilatedUNetConfig)
        layers = [conv_bn_relu(in_ch, out_ch)]
        layers += [conv_bn_relu(out_ch, out_ch, dilation=d) for d in self.config.dilations]
        return nn.Sequential(*layers)
