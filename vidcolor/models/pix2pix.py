"""pix2pix's U-Net generator (Isola et al. 2017), seed 2: trained with L1 (lambda 100) + PatchGAN.

Layer for layer the ``UnetGenerator`` of the pix2pix code: 4x4 stride-2 convolutions down
(LeakyReLU 0.2, batch norm except at the ends), 4x4 transposed convolutions up (ReLU, batch norm,
dropout in the deepest 8*ngf blocks), skips by concatenation, tanh output, weights drawn from
N(0, 0.02). Two departures, both for vidcolor's engine contract: at most 5 downsamplings (the
paper's 8 need sides that are multiples of 256, the engines take multiples of 32), and dropout
only in training mode (inference is deterministic, a film must not flicker from noise).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from vidcolor.models.base import AB_SCALE, Generator
from vidcolor.models.config import ArchConfig, require


@dataclass(frozen=True)
class Pix2PixConfig(ArchConfig):
    ARCH = "pix2pix-unet"
    arch: str = ARCH
    ngf: int = field(default=32, metadata={"means": "a positive integer"})  # paper: 64
    num_downs: int = 5
    dropout: float = 0.5

    def check(self) -> None:
        require(self.ngf > 0, f"ngf must be a positive integer, not {self.ngf!r}")
        require(2 <= self.num_downs <= 5, f"num_downs must be 2 to 5, not {self.num_downs!r}")
        require(0.0 <= self.dropout < 1.0, f"dropout must be in [0, 1), not {self.dropout!r}")


def init_pix2pix_weights(module: nn.Module) -> None:
    """pix2pix's 'normal' init: conv weights N(0, 0.02), norm scales N(1, 0.02), biases 0."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


class Pix2PixUNet(Generator):
    """``down[i]`` halves the size to width ``ngf * min(2**i, 8)``; ``up[i]`` undoes it."""

    def __init__(self, config: Pix2PixConfig | None = None):
        super().__init__()
        self.config: Pix2PixConfig = config or Pix2PixConfig()
        n, ngf = self.config.num_downs, self.config.ngf
        width = [ngf * min(2**i, 8) for i in range(n)]
        downs: list[nn.Module] = []
        ups: list[nn.Module] = []
        for i in range(n):
            outer = 1 if i == 0 else width[i - 1]
            innermost = i == n - 1
            down: list[nn.Module] = [] if i == 0 else [nn.LeakyReLU(0.2)]
            down.append(nn.Conv2d(outer, width[i], 4, stride=2, padding=1, bias=False))
            if 0 < i < n - 1:
                down.append(nn.BatchNorm2d(width[i]))
            downs.append(nn.Sequential(*down))
            up_in = width[i] if innermost else 2 * width[i]
            if i == 0:
                up: list[nn.Module] = [
                    nn.ReLU(),
                    nn.ConvTranspose2d(up_in, 2, 4, stride=2, padding=1),
                    nn.Tanh(),
                ]
            else:
                up = [
                    nn.ReLU(),
                    nn.ConvTranspose2d(up_in, outer, 4, stride=2, padding=1, bias=False),
                    nn.BatchNorm2d(outer),
                ]
                if outer == 8 * ngf and self.config.dropout > 0:
                    up.append(nn.Dropout(self.config.dropout))
            ups.append(nn.Sequential(*up))
        self.down = nn.ModuleList(downs)
        self.up = nn.ModuleList(ups)
        init_pix2pix_weights(self)

    def forward(self, lum: torch.Tensor) -> torch.Tensor:
        x = lum / 50.0 - 1.0  # pix2pix's colourisation scaling of L to [-1, 1]
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
        y = skips[-1]
        for i in reversed(range(len(self.up))):
            y = self.up[i](y)
            if i > 0:
                y = torch.cat([skips[i - 1], y], dim=1)
        return y * AB_SCALE
