"""PyTorch backend: runs the generator on the CPU, or on CUDA in half precision."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from vidcolor.errors import VidcolorError
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
    def __init__(self, weights: Path, device: str = "auto"):
        self.device = resolve_device(device)
        self.name = f"torch:{Path(weights).stem}"
        self.model = load_generator(weights).to(self.device)
        self._half = self.device.startswith("cuda")
        if self._half:
            self.model = self.model.to(memory_format=torch.channels_last)

    @torch.inference_mode()
    def infer(self, batch_l: np.ndarray) -> np.ndarray:
        lum = torch.from_numpy(np.ascontiguousarray(batch_l, dtype=np.float32)).to(self.device)
        if self._half:
            with torch.autocast("cuda", dtype=torch.float16):
                ab = self.model(lum.contiguous(memory_format=torch.channels_last))
        else:
            ab = self.model(lum)
        return ab.float().cpu().numpy()
