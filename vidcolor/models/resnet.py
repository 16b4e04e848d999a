"""ResNet-18-encoder U-Net with an upsampling decoder (seed 3), trained from scratch.

The ResNet-18 is written out here (torchvision is not a dependency of vidcolor) with torchvision's
parameter names, so ImageNet weights would load without renaming. No package on the registry ships
ResNet-18 ImageNet weights (the ones that mention it download them at run time, which these
machines cannot), so this network starts from scratch and ``load_pretrained`` does nothing; the
encoder therefore trains at the decoder's learning rate (``encoder_parameters`` is empty).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from vidcolor.models.base import AB_SCALE, Generator
from vidcolor.models.config import ArchConfig, require, require_ints
from vidcolor.models.generator import UpBlock


@dataclass(frozen=True)
class ResNetUNetConfig(ArchConfig):
    ARCH = "unet-resnet18"
    arch: str = ARCH
    decoder_channels: tuple[int, ...] = (256, 128, 64, 32)
    head_channels: int = 16

    def check(self) -> None:
        require_ints("decoder_channels", self.decoder_channels, range(4, 5))
        require(
            self.head_channels > 0,
            f"head_channels must be a positive integer, not {self.head_channels!r}",
        )


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with an identity (or 1x1 projection) shortcut."""

    def __init__(self, in_ch: int, out_ch: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False), nn.BatchNorm2d(out_ch)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.relu(y + identity)


class ResNet18Encoder(nn.Module):
    """Feature maps at strides 2 (stem), 4, 8, 16 and 32 for the decoder's skips."""

    skip_channels: tuple[int, ...] = (64, 64, 128, 256, 512)

    def __init__(self, in_channels: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = nn.Sequential(BasicBlock(64, 64, 1), BasicBlock(64, 64, 1))
        self.layer2 = nn.Sequential(BasicBlock(64, 128, 2), BasicBlock(128, 128, 1))
        self.layer3 = nn.Sequential(BasicBlock(128, 256, 2), BasicBlock(256, 256, 1))
        self.layer4 = nn.Sequential(BasicBlock(256, 512, 2), BasicBlock(512, 512, 1))
        for m in self.modules():  # torchvision's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        s2 = self.relu(self.bn1(self.conv1(x)))
        s4 = self.layer1(self.maxpool(s2))
        s8 = self.layer2(s4)
        s16 = self.layer3(s8)
        s32 = self.layer4(s16)
        return [s2, s4, s8, s16, s32]


class ResNetUNet(Generator):
    """ResNet-18 encoder, bilinear-upsampling decoder with skips, a full-resolution L stage."""

    def __init__(self, config: ResNetUNetConfig | None = None):
        super().__init__()
        self.config: ResNetUNetConfig = config or ResNetUNetConfig()
        self.encoder = ResNet18Encoder(in_channels=1)
        skips = self.encoder.skip_channels
        dec = self.config.decoder_channels
        self.up16 = UpBlock(skips[4], skips[3], dec[0], convs=2)
        self.up8 = UpBlock(dec[0], skips[2], dec[1], convs=2)
        self.up4 = UpBlock(dec[1], skips[1], dec[2], convs=2)
        self.up2 = UpBlock(dec[2], skips[0], dec[3], convs=1)
        self.up1 = UpBlock(dec[3], 1, self.config.head_channels, convs=1)
        self.head = nn.Conv2d(self.config.head_channels, 2, 1)

    def forward(self, lum: torch.Tensor) -> torch.Tensor:
        x0 = (lum - 50.0) / 25.0
        s2, s4, s8, s16, s32 = self.encoder(x0)
        x = self.up16(s32, s16)
        x = self.up8(x, s8)
        x = self.up4(x, s4)
        x = self.up2(x, s2)
        x = self.up1(x, x0)
        return self.head(x) * AB_SCALE
