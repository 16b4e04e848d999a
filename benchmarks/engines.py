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

Each engine runs in a fresh process of its own, one after another.
"""

from __future__ import annotations

import argparse
import json
import subprocess
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


def measure(key: tuple[str, str, str], args: argparse.Namespace) -> dict:
    """One engine's rows, in this process (run in a fresh process per engine: see ``main``)."""
    from vidcolor.engines import load_engine
    from vidcolor.pipeline import render_shape

    backend, device, precision = key
    start = time.perf_counter()
    engine = load_engine(
        device=device, backend=backend, precision=precision, batch_size=max(args.batches)
    )
    load_s = time.perf_counter() - start
    reference = load_engine(device="cpu", backend="torch") if key != REFERENCE else engine
    rows = []
    for size in args.sizes:
        shape = render_shape(640, 480, size)
        planes = film_planes(max(args.batches), shape)
        diff = float(np.abs(engine.infer(planes[:8]) - reference.infer(planes[:8])).mean())
        for batch in args.batches:
            seconds = time_engine(engine, planes[:batch], args.seconds)
            rows.append(
                {
                    "backend": backend,
                    "device": device,
                    "precision": precision,
                    "render": f"{shape[0]}x{shape[1]}",
                    "batch": batch,
                    "ms_per_frame": round(1000 * seconds / batch, 2),
                    "fps": round(batch / seconds, 1),
                    "mean_abs_ab_vs_torch_fp32": round(diff, 4),
                }
            )
    ciede = round(photo_ciede(engine, args.photos), 4) if args.photos else None
    return {"engine": engine.name, "load_s": round(load_s, 2), "rows": rows, "ciede2000": ciede}


REFERENCE = ("torch", "cpu", "fp32")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="*", default=[160, 256, 384])
    parser.add_argument("--batches", type=int, nargs="*", default=[1, 8, 32])
    parser.add_argument("--seconds", type=float, default=2.0, help="timing per cell")
    parser.add_argument("--photos", type=int, default=0, help="CIEDE2000 on N val photos")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:  # one engine, alone in its process
        print(json.dumps(measure(tuple(args.worker.split(":")), args)))
        return
    from e2e_cpu import cpu_name

    print(f"machine: {cpu_name()}", flush=True)
    results = {}
    # Each engine in a fresh process: two runtimes' thread pools in one process slow each
    # other down (PyTorch measured 6x slower after an ONNX Runtime session had run).
    for key in candidates():
        command = [sys.executable, __file__, "--worker", ":".join(key)]
        for flag in ("sizes", "batches"):
            command += [f"--{flag}", *map(str, getattr(args, flag))]
        command += ["--seconds", str(args.seconds), "--photos", str(args.photos)]
        out = subprocess.run(command, check=True, capture_output=True, text=True)
        result = json.loads(out.stdout.strip().splitlines()[-1])
        results[":".join(key)] = result
        for row in result["rows"]:
            print(
                f"{row['backend']:12s} {row['device']:5s} {row['precision']:5s} "
                f"{row['render']:>8s} batch {row['batch']:3d}: {row['ms_per_frame']:8.2f} ms/frame "
                f"{row['fps']:8.1f} fps  |ab - torch fp32| {row['mean_abs_ab_vs_torch_fp32']:.3f}",
                flush=True,
            )
        if result["ciede2000"] is not None:
            print(f"  CIEDE2000 on {args.photos} val photos: {result['ciede2000']}", flush=True)
    print_table(results, args)
    if args.json:
        args.json.write_text(json.dumps({"machine": cpu_name(), "engines": results}, indent=1))


def print_table(results: dict, args: argparse.Namespace) -> None:
    """The README's table: ms/frame per engine (rows) and render x batch (columns)."""
    cells = [(size, batch) for size in args.sizes for batch in args.batches]
    heads = []
    for size, batch in cells:
        row = next(iter(results.values()))["rows"][cells.index((size, batch))]
        heads.append(f"{row['render']} b{batch}")
    print("\n| engine | " + " | ".join(heads) + " | CIEDE2000 |")
    print("|---|" + "---|" * (len(cells) + 1))
    for key, result in results.items():
        values = " | ".join(f"{row['ms_per_frame']:.1f}" for row in result["rows"])
        ciede = "" if result["ciede2000"] is None else f"{result['ciede2000']:.3f}"
        print(f"| {key} | {values} | {ciede} |")


if __name__ == "__main__":
    main()
