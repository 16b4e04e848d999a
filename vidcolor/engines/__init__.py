"""Inference backends behind one interface (see ``base.Engine``), and the choice between them.

``--backend auto`` takes TensorRT when it and a CUDA GPU are usable, PyTorch on CUDA when only
the GPU is, and the fastest CPU engine otherwise (``CPU_DEFAULT``: ``benchmarks/engines.py``
measured it). A missing library, driver or GPU makes ``auto`` fall back with a warning; asked
for by name it is one clear error. Heavy imports stay inside the functions: ``import
vidcolor.engines`` loads neither torch nor ONNX Runtime.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from vidcolor.engines.base import Engine
from vidcolor.errors import VidcolorError, one_line
from vidcolor.models.shipped import default_weights
from vidcolor.options import DEFAULT_BATCH, DEFAULT_RENDER_SIZE

log = logging.getLogger(__name__)

BACKENDS = ("auto", "onnxruntime", "torch", "tensorrt")
PRECISIONS = ("auto", "fp32", "fp16", "bf16", "int8")
# What each backend can run, its default first.
BACKEND_PRECISIONS = {
    "onnxruntime": ("int8", "fp32"),
    "torch-cpu": ("fp32", "bf16"),
    "torch-cuda": ("fp16", "bf16", "fp32"),
    "tensorrt": ("fp16",),
}
# The CPU engine ``auto`` picks: the fastest in benchmarks/engines.py within CIEDE2000 0.5 of fp32.
CPU_DEFAULT = ("onnxruntime", "int8")
# What exporting and running ONNX needs (onnxscript: PyTorch's ONNX exporter).
ONNX_MODULES = ("onnx", "onnxruntime", "onnxscript")


def is_device_name(device: str) -> bool:
    """auto, cpu, cuda or cuda:N: anything else is a mistake to report, not a missing GPU."""
    return device in ("auto", "cpu", "cuda") or (
        device.startswith("cuda:") and device[5:].isascii() and device[5:].isdigit()
    )


def check_device_name(device: str) -> None:
    if not is_device_name(device):
        raise VidcolorError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N")


@dataclass(frozen=True)
class EngineChoice:
    backend: str  # onnxruntime, torch or tensorrt
    device: str  # cpu or cuda[:N]
    precision: str


def choose_engine(
    backend: str = "auto", device: str = "auto", precision: str = "auto"
) -> EngineChoice:
    """Resolve ``auto`` in backend, device and precision here; refuse what cannot run."""
    if backend not in BACKENDS:
        raise VidcolorError(f"unknown engine backend {backend!r}; use one of {', '.join(BACKENDS)}")
    if precision not in PRECISIONS:
        raise VidcolorError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    check_device_name(device)
    if backend == "auto":
        backend, device = _auto_backend(device, precision)
    elif backend == "onnxruntime":
        if device.startswith("cuda"):
            raise VidcolorError("the onnxruntime backend runs on the CPU; use --device cpu")
        problem = _onnx_problem()
        if problem is not None:
            raise VidcolorError(f"--backend onnxruntime is not usable here: {problem}")
        device = "cpu"
    elif backend == "tensorrt":
        from vidcolor.engines.tensorrt_engine import tensorrt_available

        if device == "cpu":
            raise VidcolorError("the tensorrt backend runs on a CUDA GPU, not --device cpu")
        reason = tensorrt_available()
        if reason is not None:
            raise VidcolorError(f"--backend tensorrt is not usable here: {reason}")
        device = "cuda" if device == "auto" else device
    else:
        from vidcolor.engines.torch_engine import resolve_device

        device = resolve_device(device)
    kinds = BACKEND_PRECISIONS[_kind(backend, device)]
    if precision == "auto":
        precision = kinds[0]
    elif precision not in kinds:
        raise VidcolorError(
            f"the {backend} backend on {device.split(':')[0]} runs {', '.join(kinds)}, "
            f"not {precision}"
        )
    return EngineChoice(backend, device, precision)


def _kind(backend: str, device: str) -> str:
    if backend == "torch":
        return "torch-cuda" if device.startswith("cuda") else "torch-cpu"
    return backend


def _auto_backend(device: str, precision: str) -> tuple[str, str]:
    if device != "cpu":
        from vidcolor.engines.tensorrt_engine import tensorrt_available

        if _runs("tensorrt", precision) and tensorrt_available() is None:
            return "tensorrt", "cuda" if device == "auto" else device
        if _runs("torch-cuda", precision) and _cuda_visible():
            return "torch", "cuda" if device == "auto" else device
        if device.startswith("cuda"):
            raise VidcolorError(f"--device {device} asked for, but no CUDA GPU is visible")
    cpu_backend = CPU_DEFAULT[0]
    if _runs(cpu_backend, precision):
        problem = _onnx_problem()
        if problem is None:
            return cpu_backend, "cpu"
        log.warning("%s: colourising with PyTorch on the CPU (slower)", problem)
    return "torch", "cpu"


def _onnx_problem() -> str | None:
    """None when ONNX export and ONNX Runtime work here, else why not (one line)."""
    missing = [m for m in ONNX_MODULES if importlib.util.find_spec(m) is None]
    if missing:
        return f"{', '.join(missing)} not installed (pip install {' '.join(missing)})"
    from vidcolor.signals import Interrupted, received

    try:
        import onnxruntime  # noqa: F401
    except Exception as exc:  # a broken install: ImportError, OSError from its library
        if received() is not None:  # a signal during the import, not a broken install
            raise Interrupted(received()) from None
        return f"onnxruntime cannot be imported ({one_line(str(exc)) or type(exc).__name__})"
    return None


def _runs(kind: str, precision: str) -> bool:
    return precision == "auto" or precision in BACKEND_PRECISIONS[kind]


def _cuda_visible() -> bool:
    """Whether PyTorch sees a CUDA GPU; without an NVIDIA driver, known without importing it
    (torch takes a second and hundreds of MB that a CPU engine never needs)."""
    if not nvidia_driver_present():
        return False
    import torch

    return torch.cuda.is_available()


def nvidia_driver_present() -> bool:
    """An NVIDIA kernel driver is loaded (Linux), or this is not Linux and we cannot tell."""
    if not Path("/proc").is_dir():
        return True
    return Path("/proc/driver/nvidia").exists() or Path("/dev/nvidiactl").exists()


def load_engine(
    weights: Path | None = None,
    device: str = "auto",
    backend: str = "auto",
    precision: str = "auto",
    batch_size: int = DEFAULT_BATCH,
    render_size: int = DEFAULT_RENDER_SIZE,
    threads: int | None = None,
) -> Engine:
    """The engine ``choose_engine`` picks, for the given (default: shipped) weights.

    ``batch_size`` and ``render_size`` size TensorRT's optimisation profile; other backends
    take any shape. ``threads`` caps a CPU engine's threads (default: the usable CPUs).
    """
    _check_arguments(device, batch_size, render_size, threads)
    path = check_weights(weights)
    choice = choose_engine(backend, device, precision)
    if choice.backend == "onnxruntime":
        from vidcolor.engines.onnxruntime_engine import OnnxRuntimeEngine

        return OnnxRuntimeEngine(path, choice.precision, threads)
    if choice.backend == "tensorrt":
        from vidcolor.engines.tensorrt_engine import TensorRTEngine

        return TensorRTEngine(path, choice.device, batch_size, render_size)
    from vidcolor.engines.torch_engine import TorchEngine

    return TorchEngine(path, choice.device, choice.precision)


def _check_arguments(
    device: object, batch_size: object, render_size: object, threads: object
) -> None:
    """The API's arguments, checked as the CLI's options are: one VidcolorError line each."""
    if not isinstance(device, str):
        raise VidcolorError(f"device must be a string (auto, cpu, cuda[:N]), not {device!r}")
    for name, value, least in (("batch_size", batch_size, 1), ("render_size", render_size, 32)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise VidcolorError(f"{name} must be an integer of at least {least}, not {value!r}")
    if threads is not None and (
        isinstance(threads, bool) or not isinstance(threads, int) or threads < 1
    ):
        raise VidcolorError(f"threads must be a positive integer or None, not {threads!r}")


def check_weights(weights: Path | None) -> Path:
    """The weights file to load (the shipped default when None), readable, or one clear error."""
    if weights is not None and not isinstance(weights, (str, os.PathLike)):
        raise VidcolorError(f"model weights must be a path, not {weights!r}")
    path = Path(weights) if weights is not None else default_weights()
    if not path.is_file():
        raise VidcolorError(f"model weights not found: {one_line(str(path))}")
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:  # e.g. no read permission: say so, not "no such file"
        reason = (exc.strerror or str(exc)).lower()
        raise VidcolorError(f"cannot read model weights {one_line(str(path))} ({reason})") from None
    return path


__all__ = ["Engine", "EngineChoice", "load_engine", "choose_engine", "BACKENDS", "PRECISIONS"]
