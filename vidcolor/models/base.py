"""What every generator offers: the engine contract (L -> ab) plus what training needs.

Engines only call ``forward``; the training loop also uses ``train_outputs`` (extra heads such as
colour-bin logits), ``encoder_parameters`` (a lower learning rate for a pretrained part) and
``load_pretrained``. Weights files record ``config_dict`` so ``build_generator`` rebuilds the
same network from any saved file.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from vidcolor.models.config import ArchConfig

# a,b of sRGB colours stay within about +-110: heads predict ab / AB_SCALE.
AB_SCALE = 110.0


class Generator(nn.Module):
    """Base class: L (N, 1, H, W) in 0..100 -> a,b (N, 2, H, W) in Lab units.

    H and W are multiples of 32 (``vidcolor.models.SIZE_MULTIPLE``); scaling lives inside the
    network so every engine (torch, ONNX Runtime, TensorRT) sees the same plain tensors.
    """

    # Keys of ``train_outputs``: losses check theirs against this before the first step.
    outputs: ClassVar[tuple[str, ...]] = ("ab",)
    config: ArchConfig

    def train_outputs(self, lum: torch.Tensor) -> dict[str, torch.Tensor]:
        """Everything the losses may use; ``"ab"`` is always ``forward``'s result."""
        return {"ab": self(lum)}

    def config_dict(self) -> dict[str, Any]:
        """JSON-able config: ``build_generator(config_dict())`` rebuilds this network."""
        return self.config.to_dict()

    def encoder_parameters(self) -> list[nn.Parameter]:
        """The pretrained part, trained at a lower learning rate ([] when nothing is pretrained)."""
        return []

    def load_pretrained(self) -> None:
        """Load the pretrained encoder from its registry package (training only); else no-op."""


def conv_bn_relu(in_ch: int, out_ch: int, dilation: int = 1) -> nn.Sequential:
    """3x3 convolution (padding keeps the size), batch norm, ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, 3, padding=dilation, dilation=dilation, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.ReLU(inplace=True),
    )
