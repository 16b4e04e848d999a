"""PyTorch backend: runs the generator on the CPU, or on CUDA in half precision."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from vidcolor.errors import VidcolorError
from vidcolor.models.base import Generator
from vidcolor.models.weights import load_generator


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise VidcolorError("--device cuda asked for, but no CUDA GPU is visible to PyTorch")
    if device != "cpu" and not device.startswith("cuda"):
        raise VidcolorError(f"unknown device {device!r}; use auto, cpu or cuda[:N]")
    return device


class TorchEngine:
    """The generator behind the ``Engine`` interface, always inferring in eval mode."""

    def __init__(self, weights: Path, device: str = "auto"):
        self.device = resolve_device(device)
        self.name = f"torch:{Path(weights).stem}"
        self.model = load_generator(weights).to(self.device)
        self._half = self.device.startswith("cuda")
        if self._half:
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
        engine._half = engine.device.startswith("cuda")
        return engine

    @torch.inference_mode()
    def infer(self, batch_l: np.ndarray) -> np.ndarray:
        lum = torch.from_numpy(np.ascontiguousarray(batch_l, dtype=np.float32)).to(self.device)
        was_training = self.model.training
        self.model.eval()
        try:
            if self._half:
                with torch.autocast("cuda", dtype=torch.float16):
                    ab = self.model(lum.contiguous(memory_format=torch.channels_last))
            else:
                ab = self.model(lum)
        finally:
            self.model.train(was_training)
        return ab.float().cpu().numpy()
