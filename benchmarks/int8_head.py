"""What keeping the output head in fp32 does to the int8 CPU engine, side by side in one run.

Three engines of one model on the same photos and frames: ONNX Runtime fp32, int8 of the whole
network (vidcolor before the head was kept), and int8 with the head in fp32 (``head_nodes``,
today's default). Quality: PSNR, CIEDE2000 and colourfulness on the first N photos of
``val`` and ``val-people-places`` at render 160, beside grey and the truth. Speed: ms/frame at
batch 8 on the sample film's frames at 224x160.

    python benchmarks/int8_head.py [--model M.safetensors] [--photos 150] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
SETS = {
    "val": ROOT.parent / "shared" / "data" / "val",
    "vpp": ROOT.parent / "shared" / "data" / "val-people-places",
}


def main() -> None:
    from vidcolor.train.data import EvalSource
    from vidcolor.train.evaluate import evaluate_images

    from engines import film_planes, time_engine
    from vidcolor.engines.export import cached_export
    from vidcolor.engines.onnxruntime_engine import OnnxRuntimeEngine, open_session
    from vidcolor.engines.quantize import (
        calibration_planes,
        cpu_has_vnni,
        default_calibration,
        head_nodes,
        quantize,
    )
    from vidcolor.models.shipped import default_weights
    from vidcolor.models.weights import read_tensor_names
    from vidcolor.pipeline import render_shape

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--photos", type=int, default=150)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    weights = args.model or default_weights()

    with tempfile.TemporaryDirectory(prefix="vidcolor-int8-head-") as tmp:
        work = Path(tmp)
        fp32 = cached_export(weights, "fp32")
        planes = calibration_planes(default_calibration(), 256, 160)
        variants = {"onnxruntime fp32": fp32}
        for label, keep in (
            ("int8, whole network", ()),
            ("int8, head in fp32", head_nodes(fp32, read_tensor_names(weights))),
        ):
            path = work / f"{len(variants)}.onnx"
            quantize(fp32, path, planes, not cpu_has_vnni(), keep_fp32=keep)
            variants[label] = path

        engine = OnnxRuntimeEngine(weights, "fp32")
        frames = film_planes(8, render_shape(640, 480, 160))
        results: dict[str, dict] = {}
        for label, path in variants.items():
            engine.session = open_session(path, engine.threads)
            row: dict = {
                "ms_per_frame": round(1000 * time_engine(engine, frames, args.seconds) / 8, 2)
            }
            for name, folder in SETS.items():
                ev = evaluate_images(engine, EvalSource(folder).images(args.photos), 160, True)
                row[name] = ev.to_json()
            results[label] = row
            print(label, json.dumps(row), flush=True)

    print(f"\n{weights.name}, first {args.photos} photos per set, render 160")
    head = "| engine | ms/frame (batch 8, 224x160) |"
    for name in SETS:
        head += f" {name} PSNR | {name} CIEDE2000 | {name} colourfulness |"
    print(head)
    print("|" + "---|" * (2 + 3 * len(SETS)))
    first = next(iter(results.values()))
    grey = "| grey | |"
    for name in SETS:
        g, t = first[name]["grey"], first[name]["truth"]
        grey += f" {g['psnr']:.2f} | {g['ciede2000']:.2f} | truth {t['colorfulness']:.1f} |"
    print(grey)
    for label, row in results.items():
        line = f"| {label} | {row['ms_per_frame']:.2f} |"
        for name in SETS:
            m = row[name]["model"]
            line += f" {m['psnr']:.2f} | {m['ciede2000']:.2f} | {m['colorfulness']:.1f} |"
        print(line)
    if args.json:
        args.json.write_text(json.dumps({"model": str(weights), "results": results}, indent=1))


if __name__ == "__main__":
    main()
