"""The colour generator: one definition used by training, export and inference.

Input is CIE L (0..100) of shape (N, 1, H, W) with H and W multiples of 32; output is a,b of shape
(N, 2, H, W) in Lab units. Scaling lives inside the network so every engine (torch, ONNX Runtime,
TensorRT) sees the same plain tensors.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from vidcolor.models.efficientnet_lite import EfficientNetLite0Encoder

# a,b of sRGB colours stay within about +-110; the head predicts ab / AB_SCALE.
AB_SCALE = 110.0
# Side lengths must be multiples of the encoder's total stride.
SIZE_MULTIPLE = 32


ARCHITECTURES = ("unet-efficientnet-lite0",)


def _positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


@dataclass(frozen=True)
class GeneratorConfig:
    """What a weights file records about the network that made it.

    Checked when made, so a bad recipe or a foreign weights file fails with one clear message
    (``ValueError``) before any layer is built.
    """

    arch: str = "unet-efficientnet-lite0"
    decoder_channels: tuple[int, ...] = (96, 64, 48, 24)
    head_channels: int = 16

    def __post_init__(self) -> None:
        if self.arch not in ARCHITECTURES:
            known = ", ".join(ARCHITECTURES)
            raise ValueError(f"unknown generator architecture {self.arch!r} (known: {known})")
        channels = self.decoder_channels
        if not (
            isinstance(channels, tuple)
            and len(channels) == 4
            and all(_positive_int(c) for c in channels)
        ):
            raise ValueError(f"decoder_channels must be 4 positive integers, not {channels!r}")
        if not _positive_int(self.head_channels):
            raise ValueError(
                f"head_channels must be a positive integer, not {self.head_channels!r}"
            )

    def to_dict(self) -> dict[str, object]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: object) -> GeneratorConfig:
        """Inverse of ``to_dict``; unknown keys are an error, not silently dropped."""
        if not isinstance(data, dict):
            raise ValueError(f"generator config must be a mapping, not {type(data).__name__}")
        unknown = sorted(str(k) for k in data if k not in cls.__dataclass_fields__)
        if unknown:
            known = ", ".join(cls.__dataclass_fields__)
            raise ValueError(
                f"unknown generator config key(s) {', '.join(unknown)} (known: {known})"
            )
        values = dict(data)
        if isinstance(values.get("decoder_channels"), list):
            values["decoder_channels"] = tuple(values["decoder_channels"])
        return cls(**values)


def _conv_bn_relu(in_ch: int, out_ch: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.ReLU(inplace=True),
    )


class UpBlock(nn.Module):
    """Upsample x2, concatenate the encoder skip, then refine."""

    def __init__(self, in_ch: int, skip_ch: int, out_ch: int, convs: int):
        super().__init__()
        layers = [_conv_bn_relu(in_ch + skip_ch, out_ch)]
        layers += [_conv_bn_relu(out_ch, out_ch) for _ in range(convs - 1)]
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.body(torch.cat([x, skip], dim=1))


class ColorGenerator(nn.Module):
    """U-Net with an EfficientNet-Lite0 encoder that predicts a,b from L."""

    def __init__(self, config: GeneratorConfig | None = None):
        super().__init__()
        self.config = config or GeneratorConfig()
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
