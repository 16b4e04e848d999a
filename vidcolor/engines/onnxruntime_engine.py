"""ONNX Runtime backend: the exported generator on CPUs, fp32 or int8."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from vidcolor.engines.export import INPUT_NAME, cached_export
from vidcolor.errors import VidcolorError, one_line


def usable_cpus() -> int:
    """The CPUs this process may run on (a container's or taskset's limit, not the machine's)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def open_session(path: Path, threads: int) -> object:
    """An ONNX Runtime session on the CPU, set up as the class docstring below says."""
    import onnxruntime as ort

    settings = ort.SessionOptions()
    settings.intra_op_num_threads = threads
    settings.inter_op_num_threads = 1
    settings.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    settings.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    settings.log_severity_level = 3
    settings.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(str(path), settings, providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT raises its own exception types for a bad file
        raise VidcolorError(
            f"ONNX Runtime cannot load {one_line(str(path))}: {one_line(str(exc))} "
            "(vidcolor engine clear removes the cache)"
        ) from None


class OnnxRuntimeEngine:
    """The generator as an ONNX Runtime session on the CPU.

    One intra-op thread per usable CPU and no inter-op pool: the graph is a chain, so a second
    pool only competes with decoding and encoding for the same cores. Idle threads sleep
    instead of spinning: in a film's pipeline the decoder and encoder need those cycles
    between batches.
    """

    device = "cpu"

    def __init__(
        self,
        weights: Path,
        precision: str = "int8",
        threads: int | None = None,
        calibration: Path | None = None,
    ):
        if precision not in ("fp32", "int8"):
            raise VidcolorError(f"the onnxruntime backend runs fp32 or int8, not {precision}")
        options = {"calibration": calibration} if precision == "int8" else {}
        self.path = cached_export(Path(weights), precision, **options)
        self.precision = precision
        self.name = f"onnxruntime-{precision}:{Path(weights).stem}"
        self.threads = threads or usable_cpus()
        self.session = open_session(self.path, self.threads)

    def infer(self, batch_l: np.ndarray) -> np.ndarray:
        lum = np.ascontiguousarray(batch_l, dtype=np.float32)
        return self.session.run(None, {INPUT_NAME: lum})[0]
