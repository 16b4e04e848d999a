"""Where a classification model's annealed-mean temperature puts it between vivid and accurate.

The annealed mean decodes the colour-bin scores as softmax(logits / T) averaged over the bins:
T = 1 is the mean (muted, close to a regression model), T -> 0 the mode (vivid, wrong more
often). T is part of the model's config, so it can be chosen after training without retraining.
This scores one trained model at several T on the validation folders, beside the grey baseline:

    python benchmarks/temperature.py runs/seed-4-classification/generator.safetensors \\
        [--t 0.38 --t 0.5 ...] [--data ../shared/data/val ...] [--limit N] [--out FILE.json]
        [--held-out 0.05]

Choose T on these folders only if the targets are then checked on photos they do not hold:
``--data ../shared/data/train --held-out 0.05`` scores the share a recipe's ``hold_out: 0.05``
kept out of training.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

from safetensors.torch import load_file, save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
from recipes import DATA, score_model  # noqa: E402

TEMPERATURES = [0.2, 0.38, 0.5, 0.65, 0.8, 1.0]


def with_temperature(source: Path, temperature: float, folder: Path) -> Path:
    """A copy of ``source`` whose config decodes at ``temperature``."""
    from vidcolor.models.weights import read_metadata

    meta = read_metadata(source)
    config = json.loads(meta["config"])
    if "temperature" not in config:
        raise SystemExit(f"temperature.py: {source} is not a classification model ({config})")
    config["temperature"] = temperature
    meta["config"] = json.dumps(config)
    target = folder / f"t{temperature:g}.safetensors"
    save_file(load_file(str(source)), str(target), metadata=meta)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--t", type=float, action="append", help="temperatures (default: 6)")
    parser.add_argument("--data", type=Path, action="append")
    parser.add_argument("--render-size", type=int, default=160)
    parser.add_argument("--limit", type=int, default=None, help="photos per folder")
    parser.add_argument(
        "--held-out",
        type=float,
        default=None,
        help="only the photos of each folder a training hold_out of this share left out",
    )
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None, help="also write the rows as JSON")
    args = parser.parse_args()

    from vidcolor.engines import load_engine

    data = args.data or DATA
    rows: list[dict[str, object]] = []
    print("| T | folder | PSNR (grey) | SSIM | CIEDE2000 (grey) | colourfulness (truth) | ΔCF |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        for number, temperature in enumerate(args.t or TEMPERATURES):
            path = with_temperature(args.model, temperature, Path(folder))
            engine = load_engine(path, render_size=args.render_size, threads=args.threads)
            scored = score_model(
                engine, data, args.render_size, args.limit, number == 0, args.held_out
            )
            for name, (evaluation, _) in scored.items():
                model = evaluation.model
                if evaluation.grey is not None:
                    rows.append({"t": None, "data": name, **asdict(evaluation.grey)})
                grey = next(r for r in rows if r["t"] is None and r["data"] == name)
                rows.append({"t": temperature, "data": name, **asdict(model)})
                print(
                    f"| {temperature:g} | {name} | {model.psnr:.2f} ({grey['psnr']:.2f}) | "
                    f"{model.ssim:.4f} | {model.ciede2000:.2f} ({grey['ciede2000']:.2f}) | "
                    f"{model.colorfulness:.1f} ({evaluation.truth_colorfulness:.1f}) | "
                    f"{model.delta_cf:+.1f} |",
                    flush=True,
                )
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
