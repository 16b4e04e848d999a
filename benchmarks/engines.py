"""Model-only speed of every engine this machine can run, side by side in one run.

For each available backend and precision (ONNX Runtime fp32/int8 and PyTorch fp32/bf16 on the
CPU; PyTorch fp16 and TensorRT fp16 where a CUDA GPU and TensorRT are usable), at batch 1, 8
and 32 and render sizes 160, 256 and 384 (the render shape of a 4:3 film: 224x160, 352x256,
512x384), this times ``engine.infer`` on real L planes from the sample film and prints
ms/frame and frames/s. Quality beside it: the mean |ab| difference from PyTorch fp32 on the
same frames, and (``--photos N``) CIEDE2000 against the truth on N photos of shared/data/val,
the issue's bar being 0.5 from fp32.

    python benchmarks/engines.py [--sizes 160 256 384] [--batches 1 8 32] [--photos 300]
        [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
SAMPLE = ROOT / "samples" / "a-bomb-blast-effects.mp4"
VAL = ROOT.parent / "shared" / "data" / "val"


def candidates() -> list[tuple[str, str, str]]:
    """(backend, device, precision) of every engine usable here."""
    import importlib.util

    import torch

    from vidcolor.engines.tensorrt_engine import tensorrt_available

    found = [("torch", "cpu", "fp32"), ("torch", "cpu", "bf16")]
    if importlib.util.find_spec("onnxruntime") is not None:
        found[:0] = [("onnxruntime", "cpu", "fp32"), ("onnxruntime", "cpu", "int8")]
    if torch.cuda.is_available():
        found += [("torch", "cuda", "fp16"), ("torch", "cuda", "fp32")]
        if tensorrt_available() is None:
            found.append(("tensorrt", "cuda", "fp16"))
    return found


def film_planes(count: int, shape: tuple[int, int]) -> np.ndarray:
    """``count`` L planes of the sample film at render ``shape`` (w, h): real content, not noise."""
    from vidcolor.media.decode import VideoReader
    from vidcolor.pipeline import render_planes

    planes = []
    with VideoReader(SAMPLE) as reader:
        for frame in reader.frames():
            if hasattr(frame, "luminance"):
                planes.append(frame.luminance)
                if len(planes) == count:
                    break
    while len(planes) < count:
        planes += planes[: count - len(planes)]
    return render_planes(planes, shape)[:, None]


def time_engine(engine, batch: np.ndarray, seconds: float) -> float:
    """Seconds per call, the median of repeated calls after two warm-up calls."""
    engine.infer(batch)
    engine.infer(batch)
    times = []
    start = time.perf_counter()
    while not times or time.perf_counter() - start < seconds or len(times) < 3:
        t0 = time.perf_counter()
        engine.infer(batch)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def photo_ciede(engine, photos: int) -> float:
    from vidcolor.train.data import EvalSource
    from vidcolor.train.evaluate import evaluate_images

    return evaluate_images(engine, EvalSource(VAL).images(photos), 160).model.ciede2000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="*", default=[160, 256, 384])
    parser.add_argument("--batches", type=int, nargs="*", default=[1, 8, 32])
    parser.add_argument("--seconds", type=float, default=2.0, help="timing per cell")
    parser.add_argument("--photos", type=int, default=0, help="CIEDE2000 on N val photos")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    from e2e_cpu import cpu_name

    from vidcolor.engines import load_engine
    from vidcolor.pipeline import render_shape

    print(f"machine: {cpu_name()}", flush=True)
    rows = []
    engines = {}
    for backend, device, precision in candidates():
        start = time.perf_counter()
        engines[(backend, device, precision)] = load_engine(
            device=device, backend=backend, precision=precision, batch_size=max(args.batches)
        )
        print(f"loaded {backend} {device} {precision} in {time.perf_counter() - start:.1f} s")
    reference = engines[("torch", "cpu", "fp32")]
    for size in args.sizes:
        shape = render_shape(640, 480, size)
        planes = film_planes(max(args.batches), shape)
        expected = reference.infer(planes[:8])
        for key, engine in engines.items():
            diff = float(np.abs(engine.infer(planes[:8]) - expected).mean())
            for batch in args.batches:
                seconds = time_engine(engine, planes[:batch], args.seconds)
                row = {
                    "backend": key[0],
                    "device": key[1],
                    "precision": key[2],
                    "render": f"{shape[0]}x{shape[1]}",
                    "batch": batch,
                    "ms_per_frame": round(1000 * seconds / batch, 2),
                    "fps": round(batch / seconds, 1),
                    "mean_abs_ab_vs_torch_fp32": round(diff, 4),
                }
                rows.append(row)
                print(
                    f"{key[0]:12s} {key[1]:5s} {key[2]:5s} {row['render']:>8s} batch {batch:3d}: "
                    f"{row['ms_per_frame']:8.2f} ms/frame {row['fps']:8.1f} fps  "
                    f"|ab - torch fp32| {diff:.3f}",
                    flush=True,
                )
    quality = {}
    if args.photos:
        for key, engine in engines.items():
            quality["-".join(key)] = round(photo_ciede(engine, args.photos), 4)
            print(
                f"CIEDE2000 on {args.photos} val photos, {' '.join(key)}: {quality['-'.join(key)]}"
            )
    if args.json:
        args.json.write_text(
            json.dumps({"machine": cpu_name(), "rows": rows, "ciede2000": quality}, indent=1)
        )


if __name__ == "__main__":
    main()
