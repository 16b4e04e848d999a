"""PyTorch backend: the generator on the CPU (fp32, or bf16 where the CPU has it) or on CUDA
(fp16 or bf16 autocast, channels-last)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from vidcolor.engines import check_device_name
from vidcolor.errors import VidcolorError
from vidcolor.models.base import Generator
from vidcolor.models.weights import load_generator


def resolve_device(device: str) -> str:
    check_device_name(device)
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise VidcolorError(f"device {device} asked for, but no CUDA GPU is visible to PyTorch")
    return device


_AUTOCAST = {"fp16": torch.float16, "bf16": torch.bfloat16}


class TorchEngine:
    """The generator behind the ``Engine`` interface, always inferring in eval mode."""

    def __init__(self, weights: Path, device: str = "auto", precision: str | None = None):
        self.device = resolve_device(device)
        self.precision = precision or ("fp16" if self.device.startswith("cuda") else "fp32")
        if self.precision not in ("fp32", *_AUTOCAST):
            raise VidcolorError(f"the torch backend runs fp32, fp16 or bf16, not {self.precision}")
        if self.precision == "fp16" and not self.device.startswith("cuda"):
            raise VidcolorError("fp16 needs a CUDA GPU; on the CPU use fp32 or bf16")
        self.name = f"torch-{self.precision}:{Path(weights).stem}"
        self.model = load_generator(weights).to(self.device)
        self._channels_last = self.precision != "fp32" or self.device.startswith("cuda")
        if self._channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)

    @classmethod
    def from_model(
        cls, model: Generator, device: str | None = None, name: str = "torch:live"
    ) -> TorchEngine:
        """Wrap a model that is being trained, so validation scores it exactly as vidcolor runs.

        The model is used in place (not copied, not moved): ``device`` defaults to where its
        parameters are. ``infer`` switches it to eval mode and restores its mode afterwards.
        """
        engine = cls.__new__(cls)
        engine.device = device or str(next(model.parameters()).device)
        engine.name = name
        engine.model = model
        engine.precision = "fp16" if engine.device.startswith("cuda") else "fp32"
        engine._channels_last = False  # the trainer owns the model's memory format
        return engine

    @torch.inference_mode()
    def infer(self, batch_l: np.ndarray) -> np.ndarray:
        lum = torch.from_numpy(np.ascontiguousarray(batch_l, dtype=np.float32)).to(self.device)
        was_training = self.model.training
        self.model.eval()
        try:
            if self._channels_last:
                lum = lum.contiguous(memory_format=torch.channels_last)
            if self.precision in _AUTOCAST:
                device_type = "cuda" if self.device.startswith("cuda") else "cpu"
                with torch.autocast(device_type, dtype=_AUTOCAST[self.precision]):
                    ab = self.model(lum)
            else:
                ab = self.model(lum)
        finally:
            self.model.train(was_training)
        return ab.float().cpu().numpy()
