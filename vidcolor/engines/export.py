"""The generator exported once to ONNX (L in, ab out; dynamic batch, height and width).

Three precisions, all from the one generator definition:

- ``fp32``: for ONNX Runtime on CPUs; checked with the ONNX checker and against PyTorch.
- ``fp16``: for TensorRT's strongly typed networks, where the ONNX types decide precision. The
  network runs in half precision with fp32 input and output; a classification model decodes its
  colour bins in fp32, so the softmax over bins cannot overflow.
- ``int8``: ONNX Runtime static quantisation of the fp32 export (``vidcolor.engines.quantize``).

Every export is cached (``vidcolor.engines.cache``), keyed by the weights' hash, the precision,
the opset and the exporter's versions: ``vidcolor film.mp4`` exports on its first run only.
"""

from __future__ import annotations

import copy
import logging
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from vidcolor.engines import cache
from vidcolor.errors import VidcolorError, one_line

OPSET = 18
PRECISIONS = ("fp32", "fp16", "int8")
INPUT_NAME = "L"
OUTPUT_NAME = "ab"
# The fp32 export must equal PyTorch on ab (Lab units) within this, at every checked shape: a
# hundredth of a just-noticeable colour difference. fp32 rounding alone reaches 1e-3 (a plain
# U-Net trained 2,000 steps: PyTorch fp32 is 1.05e-3 from float64, ONNX Runtime 1.14e-3, 1.5e-3
# apart); an export that is wrong is off by whole units.
EXPORT_TOLERANCE = 1e-2


def export_key(
    weights: Path, precision: str, extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    """What an export depends on: any change makes a new cache entry."""
    from importlib.metadata import version  # not the packages themselves: torch is slow to import

    parts: dict[str, Any] = {
        "model": cache.file_digest(weights),
        "model_name": Path(weights).name,  # shown by `engine list`, not part of the key
        "precision": precision,
        "opset": OPSET,
        "torch": version("torch"),
        "onnx": version("onnx"),
    }
    parts.update(extra or {})
    return parts


def cached_export(weights: Path, precision: str = "fp32", **quantize_options: Any) -> Path:
    """The ONNX file for these weights at this precision, exported now if not yet cached."""
    if precision not in PRECISIONS:
        raise VidcolorError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    _require_onnx()
    if precision == "int8":
        from vidcolor.engines.quantize import cached_int8

        return cached_int8(weights, **quantize_options)
    item = cache.entry("onnx", export_key(weights, precision), ".onnx")

    def build(tmp: Path) -> None:
        from vidcolor.models.weights import load_generator

        model = load_generator(weights)
        note(f"exporting {Path(weights).name} to ONNX ({precision}), once for this model")
        export_onnx(model, tmp, half=precision == "fp16")

    return cache.get_or_build(item, build)


def export_onnx(model: Any, path: Path, half: bool = False) -> None:
    """Export ``model`` (a Generator) to ``path`` and check it; fp32 is compared with PyTorch."""
    import onnx
    import torch

    from vidcolor.models import SIZE_MULTIPLE

    model = model.eval()
    example = torch.rand(2, 1, 2 * SIZE_MULTIPLE, 3 * SIZE_MULTIPLE) * 100
    network = half_precision(model) if half else model
    dynamic = torch.export.Dim.DYNAMIC
    with _quiet_exporter():
        program = torch.onnx.export(
            network,
            (example,),
            None,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            opset_version=OPSET,
            dynamic_shapes=({0: dynamic, 2: dynamic, 3: dynamic},),
            dynamo=True,
            verbose=False,
        )
    if program is None:  # pragma: no cover - dynamo=True always returns a program
        raise VidcolorError("ONNX export returned nothing")
    program.save(str(path), external_data=False)
    proto = onnx.load(str(path))
    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise VidcolorError(f"the ONNX export failed its check: {one_line(str(exc))}") from None
    if not half:
        check_against_torch(model, path)


def check_against_torch(model: Any, path: Path) -> float:
    """Largest |ab| difference between the ONNX file (in ONNX Runtime) and PyTorch.

    Checked at several batch sizes and aspect ratios, so a shape frozen by the exporter fails
    here, not on a user's film.
    """
    import onnxruntime as ort
    import torch

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst = 0.0
    generator = torch.Generator().manual_seed(0)
    for shape in ((1, 1, 64, 96), (3, 1, 96, 64), (2, 1, 160, 224)):
        lum = torch.rand(shape, generator=generator) * 100
        with torch.no_grad():
            expected = model(lum).numpy()
        got = session.run(None, {INPUT_NAME: lum.numpy()})[0]
        if got.shape != expected.shape:
            raise VidcolorError(f"the ONNX export gives {got.shape} for {tuple(shape)}")
        worst = max(worst, float(np.abs(got - expected).max()))
    if not worst <= EXPORT_TOLERANCE:
        raise VidcolorError(f"the ONNX export differs from PyTorch by {worst:.2g} on ab")
    return worst


def half_precision(model: Any) -> Any:
    """fp32 L in, fp32 ab out, the network in between in fp16 (its decoding keeps to fp32)."""
    import torch
    from torch import nn

    class HalfPrecision(nn.Module):
        def __init__(self, inner: nn.Module):
            super().__init__()
            self.inner = inner.half()

        def forward(self, lum: torch.Tensor) -> torch.Tensor:
            return self.inner(lum.half()).float()

    return HalfPrecision(copy.deepcopy(model))


def _require_onnx() -> None:
    import importlib.util

    missing = [m for m in ("onnx", "onnxruntime", "onnxscript") if not importlib.util.find_spec(m)]
    if missing:
        raise VidcolorError(
            f"ONNX export needs {', '.join(missing)}: pip install {' '.join(missing)}"
        )


class _quiet_exporter:
    """The exporter logs per-op chatter and warnings that say nothing to a user; hide them."""

    def __enter__(self) -> None:
        self._warnings = warnings.catch_warnings()
        self._warnings.__enter__()
        warnings.simplefilter("ignore")
        self._levels = {}
        for name in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript", "torch"):
            log = logging.getLogger(name)
            self._levels[name] = log.level
            log.setLevel(logging.ERROR)

    def __exit__(self, *exc: object) -> None:
        for name, level in self._levels.items():
            logging.getLogger(name).setLevel(level)
        self._warnings.__exit__(*exc)


def note(message: str) -> None:
    """A line on stderr about slow one-off work (not shown with -q, which raises the log level)."""
    if logging.getLogger().isEnabledFor(logging.WARNING):
        print(f"vidcolor: {one_line(message)}", file=sys.stderr, flush=True)
