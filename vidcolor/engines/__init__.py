"""Inference backends behind one interface (see ``base.Engine``)."""

from __future__ import annotations

from pathlib import Path

from vidcolor.engines.base import Engine
from vidcolor.errors import VidcolorError, one_line
from vidcolor.models.shipped import default_weights

BACKENDS = ("torch",)


def load_engine(
    weights: Path | None = None, device: str = "auto", backend: str = "torch"
) -> Engine:
    """Build the backend named ``backend`` for the given (default: shipped) weights."""
    path = Path(weights) if weights is not None else default_weights()
    if not path.is_file():
        raise VidcolorError(f"model weights not found: {one_line(str(path))}")
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:  # e.g. no read permission: say so, not "no such file"
        reason = (exc.strerror or str(exc)).lower()
        raise VidcolorError(f"cannot read model weights {one_line(str(path))} ({reason})") from None
    if backend == "torch":
        from vidcolor.engines.torch_engine import TorchEngine

        return TorchEngine(path, device)
    raise VidcolorError(f"unknown engine backend {backend!r}; available: {', '.join(BACKENDS)}")


__all__ = ["Engine", "load_engine", "BACKENDS"]
