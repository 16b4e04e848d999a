"""TensorRT backend: the fp16 ONNX export compiled for the GPU at hand, run on CUDA tensors.

Written against TensorRT 10's and 11's documented Python API (strongly typed networks, named
I/O tensors, ``execute_async_v3``). The network is strongly typed, so the ONNX types decide the
precision: the fp16 export's network runs in half precision with fp32 input and output.

Built engines are cached on disk, keyed by the TensorRT version, the GPU's name and compute
capability, the model's hash and the optimisation profile, and rebuilt when any of them changes;
a timing cache per GPU and TensorRT version makes rebuilds fast. One profile covers batches up
to the run's batch size and any render shape of the run's render size (short side at most the
render size, long side at most 4x it), so a short last batch or another film's aspect ratio
never needs a new engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vidcolor.engines import cache
from vidcolor.engines.export import INPUT_NAME, OUTPUT_NAME, cached_export
from vidcolor.errors import VidcolorError, one_line
from vidcolor.models import SIZE_MULTIPLE
from vidcolor.options import DEFAULT_BATCH, DEFAULT_RENDER_SIZE
from vidcolor.pipeline import MAX_RENDER_ASPECT

WORKSPACE_BYTES = 2 << 30


def tensorrt_available() -> str | None:
    """None when TensorRT and a CUDA GPU are usable here, else why not (one line)."""
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return "the tensorrt package is not installed (pip install 'vidcolor[tensorrt]')"
    except Exception as exc:  # a broken install raises OSError/RuntimeError on import
        return f"tensorrt cannot be imported: {one_line(str(exc))}"
    from vidcolor.engines import _cuda_visible

    if not _cuda_visible():
        return "no CUDA GPU is visible"
    return None


@dataclass(frozen=True)
class Profile:
    """The input shapes one engine accepts: (N, 1, H, W) from ``minimum`` to ``maximum``."""

    minimum: tuple[int, int, int, int]
    optimum: tuple[int, int, int, int]
    maximum: tuple[int, int, int, int]

    @classmethod
    def for_run(cls, batch_size: int, render_size: int) -> Profile:
        side = _snap(render_size)
        longest = _snap(render_size * MAX_RENDER_ASPECT)
        wide = _snap(render_size * 16 / 9)
        return cls(
            (1, 1, SIZE_MULTIPLE, SIZE_MULTIPLE),
            (batch_size, 1, side, wide),
            (batch_size, 1, longest, longest),
        )

    def holds(self, shape: tuple[int, ...]) -> bool:
        return len(shape) == 4 and all(
            lo <= s <= hi for lo, s, hi in zip(self.minimum, shape, self.maximum, strict=True)
        )


def _snap(side: float) -> int:
    return max(SIZE_MULTIPLE, int(round(side / SIZE_MULTIPLE)) * SIZE_MULTIPLE)


def engine_key(
    weights: Path, profile: Profile, trt_version: str, gpu: str, capability: str
) -> dict:
    """Everything a serialized engine depends on; a change in any part builds a new one."""
    return {
        "model": cache.file_digest(weights),
        "model_name": Path(weights).name,
        "tensorrt": trt_version,
        "gpu": gpu,
        "compute_capability": capability,
        "profile": [profile.minimum, profile.optimum, profile.maximum],
        "precision": "fp16",
    }


class TensorRTEngine:
    """The generator as a TensorRT engine on one GPU."""

    def __init__(
        self,
        weights: Path,
        device: str = "cuda",
        batch_size: int = DEFAULT_BATCH,
        render_size: int = DEFAULT_RENDER_SIZE,
    ):
        reason = tensorrt_available()
        if reason is not None:
            raise VidcolorError(f"--backend tensorrt is not usable: {reason}")
        import tensorrt as trt
        import torch

        self._trt = trt
        self._torch = torch
        self.weights = Path(weights)
        self.device = device if device.startswith("cuda") else "cuda"
        self.name = f"tensorrt-fp16:{self.weights.stem}"
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self._contexts: list[tuple[Profile, Any, Any]] = []
        self._stream = torch.cuda.Stream(device=self.device)
        self._ensure(Profile.for_run(batch_size, render_size))

    # --- building and caching -----------------------------------------------------------

    def _gpu(self) -> tuple[str, str]:
        props = self._torch.cuda.get_device_properties(self.device)
        return props.name, f"{props.major}.{props.minor}"

    def engine_file(self, profile: Profile) -> cache.CacheEntry:
        gpu, capability = self._gpu()
        key = engine_key(self.weights, profile, self._trt.__version__, gpu, capability)
        return cache.entry("tensorrt", key, ".engine")

    def _ensure(self, profile: Profile) -> tuple[Profile, Any, Any]:
        for held in self._contexts:
            if held[0] == profile:
                return held
        item = self.engine_file(profile)

        def build(tmp: Path) -> None:
            from vidcolor.engines.export import note

            note(f"building the TensorRT engine for {self.weights.name}, once for this GPU")
            tmp.write_bytes(self._build(profile))

        path = cache.get_or_build(item, build)
        engine = self._runtime.deserialize_cuda_engine(path.read_bytes())
        if engine is None:
            raise VidcolorError(
                f"TensorRT cannot load {one_line(str(path))} "
                "(vidcolor engine clear removes the cache)"
            )
        context = engine.create_execution_context()
        held = (profile, engine, context)
        self._contexts.append(held)
        return held

    def _build(self, profile: Profile) -> bytes:
        trt = self._trt
        onnx_path = cached_export(self.weights, "fp16")
        builder = trt.Builder(self._logger)
        # TensorRT 10 asks for strong typing with a flag; in 11 every network is strongly
        # typed and the flag may be gone.
        strongly_typed = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
        flags = 0 if strongly_typed is None else 1 << int(strongly_typed)
        network = builder.create_network(flags)
        parser = trt.OnnxParser(network, self._logger)
        if not parser.parse_from_file(str(onnx_path)):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise VidcolorError(f"TensorRT cannot parse the fp16 export: {one_line(errors)}")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
        shapes = builder.create_optimization_profile()
        shapes.set_shape(INPUT_NAME, profile.minimum, profile.optimum, profile.maximum)
        config.add_optimization_profile(shapes)
        timing_path = self._timing_cache_path()
        timing = config.create_timing_cache(
            timing_path.read_bytes() if timing_path.is_file() else b""
        )
        config.set_timing_cache(timing, ignore_mismatch=False)
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise VidcolorError("TensorRT could not build an engine for this model on this GPU")
        cache.replace_file(timing_path, bytes(config.get_timing_cache().serialize()))
        return bytes(serialized)

    def _timing_cache_path(self) -> Path:
        gpu, capability = self._gpu()
        key = cache.entry_key({"tensorrt": self._trt.__version__, "gpu": gpu, "cc": capability})
        return cache.usable_dir("tensorrt") / f"timing-{key}.cache"

    # --- running ------------------------------------------------------------------------

    def infer(self, batch_l: np.ndarray) -> np.ndarray:
        return self.infer_tensor(self._torch.from_numpy(np.ascontiguousarray(batch_l, np.float32)))

    def infer_tensor(self, lum: Any) -> np.ndarray:
        """L as a CPU or CUDA tensor -> ab as a float32 numpy array."""
        torch = self._torch
        shape = tuple(lum.shape)
        held = next((h for h in self._contexts if h[0].holds(shape)), None)
        if held is None:
            height, width = shape[2], shape[3]
            held = self._ensure(Profile.for_run(shape[0], max(min(height, width), 1)))
        _, _, context = held
        with torch.cuda.stream(self._stream):
            source = lum.to(self.device, torch.float32, non_blocking=True).contiguous()
            result = torch.empty(
                (shape[0], 2, shape[2], shape[3]), dtype=torch.float32, device=self.device
            )
            context.set_input_shape(INPUT_NAME, shape)
            context.set_tensor_address(INPUT_NAME, source.data_ptr())
            context.set_tensor_address(OUTPUT_NAME, result.data_ptr())
            if not context.execute_async_v3(self._stream.cuda_stream):
                raise VidcolorError("TensorRT failed to run a batch")
            out = result.cpu()
        self._stream.synchronize()
        return out.numpy()
