"""The default generator: a U-Net with an ImageNet EfficientNet-Lite0 encoder.

Input is CIE L (0..100) of shape (N, 1, H, W) with H and W multiples of 32; output is a,b of shape
(N, 2, H, W) in Lab units. Scaling lives inside the network so every engine (torch, ONNX Runtime,
TensorRT) sees the same plain tensors. Other architectures live beside it and are all built by
name through ``vidcolor.models.registry``; module and tensor names here are those of the shipped
weights, so they stay as they are.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from vidcolor.models.base import AB_SCALE, Generator, conv_bn_relu
from vidcolor.models.config import ArchConfig, require, require_ints
from vidcolor.models.efficientnet_lite import EfficientNetLite0Encoder, lite0_imagenet_state

__all__ = ["AB_SCALE", "SIZE_MULTIPLE", "ColorGenerator", "GeneratorConfig", "UpBlock"]

# Side lengths must be multiples of the encoder's total stride.
SIZE_MULTIPLE = 32


@dataclass(frozen=True)
class GeneratorConfig(ArchConfig):
    """What a weights file records about the default network (``unet-efficientnet-lite0``).

    Checked when made, so a bad recipe or a foreign weights file fails with one clear message
    (``ConfigError``, a ``ValueError``) before any layer is built.
    """

    ARCH = "unet-efficientnet-lite0"
    arch: str = ARCH
    decoder_channels: tuple[int, ...] = (96, 64, 48, 24)
    head_channels: int = field(default=16, metadata={"means": "a positive integer"})

    def check(self) -> None:
        require_ints("decoder_channels", self.decoder_channels, range(4, 5))
        require(
            self.head_channels > 0,
            f"head_channels must be a positive integer, not {self.head_channels!r}",
        )


class UpBlock(nn.Module):
    """Upsample to the skip's size, concatenate the encoder skip, then refine."""

    def __init__(self, in_ch: int, skip_ch: int, out_ch: int, convs: int):
        super().__init__()
        layers = [conv_bn_relu(in_ch + skip_ch, out_ch)]
        layers += [conv_bn_relu(out_ch, out_ch) for _ in range(convs - 1)]
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.body(torch.cat([x, skip], dim=1))


class ColorGenerator(Generator):
    """U-Net with an EfficientNet-Lite0 encoder that predicts a,b from L."""

    def __init__(self, config: GeneratorConfig | None = None):
        super().__init__()
        self.config: GeneratorConfig = config or GeneratorConfig()
        self.encoder = EfficientNetLite0Encoder(in_channels=1)
        skips = self.encoder.skip_channels  # strides 2, 4, 8, 16, 32
        dec = self.config.decoder_channels
        self.up16 = UpBlock(skips[4], skips[3], dec[0], convs=2)
        self.up8 = UpBlock(dec[0], skips[2], dec[1], convs=2)
        self.up4 = UpBlock(dec[1], skips[1], dec[2], convs=2)
        self.up2 = UpBlock(dec[2], skips[0], dec[3], convs=1)
        # Full-resolution stage sees L again so colour edges follow luminance edges.
        self.up1 = UpBlock(dec[3], 1, self.config.head_channels, convs=1)
        self.head = nn.Conv2d(self.config.head_channels, 2, 1)

    @staticmethod
    def normalize_l(lum: torch.Tensor) -> torch.Tensor:
        return (lum - 50.0) / 25.0

    def forward(self, lum: torch.Tensor) -> torch.Tensor:
        x0 = self.normalize_l(lum)
        s2, s4, s8, s16, s32 = self.encoder(x0)
        x = self.up16(s32, s16)
        x = self.up8(x, s8)
        x = self.up4(x, s4)
        x = self.up2(x, s2)
        x = self.up1(x, x0)
        return self.head(x) * AB_SCALE

    def encoder_parameters(self) -> list[nn.Parameter]:
        return list(self.encoder.parameters())

    def load_pretrained(self) -> None:
        self.encoder.load_imagenet_state_dict(lite0_imagenet_state())
