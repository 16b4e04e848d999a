"""The seeds' systems, the shipped model and any other generators, scored side by side.

Every model is scored on the same validation folders by ``vidcolor eval``'s own code (the path
``vidcolor photo.jpg`` runs, at the default render size and engine), beside the grey baseline,
and shown on the same six photos in one picture: one row per model, the grey input on top and
the truth at the bottom.

    python benchmarks/recipes.py --model "seed 1=runs/seed-1-unet-mse/generator.safetensors" \\
        [--model LABEL=PATH ...] [--ab-scale LABEL=1.3] [--data ../shared/data/val ...]
        [--out docs/recipes]
    python benchmarks/recipes.py --add --relabel "seed 1" "seed 1 (6,000 steps)"
    python benchmarks/recipes.py --add --model "seed 3=..." --move "seed 3" "seed 2"

Writes OUT/recipes.md (one table per validation folder), OUT/recipes.json and OUT/recipes.png,
and prints the tables. With --add, the rows already in OUT stay (their models need not be at
hand: a seed trained in another sitting is scored once) and these models' rows join them.
Each model's training facts (architecture, steps, minutes) come from the recipe its
safetensors metadata carries.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import sys
import time
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from vidcolor.errors import VidcolorError, one_line

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
DATA = [SHARED / "val", SHARED / "val-people-places"]
# Three of the complaints (daisies on brown grass, a cream goldfish, a sepia pizza) and
# three of what films show: a face, a street, a landscape.
PHOTOS = [
    "val/n11939491_daisy.jpg",
    "val/n01443537_goldfish.jpg",
    "val/n07873807_pizza.jpg",
    "val-people-places/UTKFace_3.jpg",
    "val-people-places/Intel_459.jpg",
    "val-people-places/BSDS500_569.jpg",
]
CELL = 128
LABEL_WIDTH = 230
GAP = 4


def parse_model(text: str) -> tuple[str, Path]:
    label, sep, path = text.rpartition("=")
    if not sep or not label:
        raise argparse.ArgumentTypeError(f"expected LABEL=PATH, got {text!r}")
    return label, Path(path)


class ScaledEngine:
    """An engine whose a,b are multiplied by ``scale``: the saturation knob a trained model's
    vividness is compared against (never what vidcolor itself does)."""

    def __init__(self, engine, scale: float):
        self.engine, self.scale = engine, scale
        self.name = f"{engine.name} x{scale:g}"
        self.device = engine.device

    def infer(self, batch_l: np.ndarray) -> np.ndarray:
        return self.engine.infer(batch_l) * np.float32(self.scale)


def parse_scale(text: str) -> tuple[str, float]:
    label, sep, value = text.rpartition("=")
    try:
        return label, float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LABEL=NUMBER, got {text!r}") from None


def training_facts(path: Path) -> dict[str, object]:
    """What the model's metadata says of how it was trained (empty for older files)."""
    from vidcolor.models.weights import read_metadata

    meta = read_metadata(path)
    facts: dict[str, object] = {}
    for key in ("config", "step", "max_steps", "train_minutes", "complete", "data"):
        if key in meta:
            try:
                facts[key] = json.loads(meta[key])
            except ValueError:
                facts[key] = meta[key]
    return facts


def read_photo(spec: str, data: list[Path]) -> np.ndarray:
    from vidcolor.media.images import read_image

    folder, _, name = spec.partition("/")
    for root in data:
        if root.name == folder and (root / name).is_file():
            return read_image(root / name).rgb
    raise SystemExit(f"recipes.py: grid photo {spec} is in none of the --data folders")


def score_model(
    engine,
    data: list[Path],
    render_size: int,
    limit: int | None,
    grey: bool,
    held_out: float | None = None,
):
    """{folder name: (evaluation, seconds)}; with ``held_out``, of that held-out share only."""
    from vidcolor.train.data import EvalSource
    from vidcolor.train.evaluate import evaluate_images

    results = {}
    for root in data:
        started = time.perf_counter()
        evaluation = evaluate_images(
            engine, EvalSource(root, held_out).images(limit), render_size, with_grey=grey
        )
        results[root.name] = (evaluation, time.perf_counter() - started)
    return results


def cell(rgb: np.ndarray) -> np.ndarray:
    """uint8 RGB, CELL high, centre-cropped to a square so every column lines up."""
    from vidcolor.color import to_uint

    h, w = rgb.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    square = to_uint(rgb)[top : top + side, left : left + side]
    return cv2.resize(square, (CELL, CELL), interpolation=cv2.INTER_AREA)


def grid_row(label: str, images: list[np.ndarray]) -> np.ndarray:
    width = LABEL_WIDTH + len(images) * (CELL + GAP)
    row = np.full((CELL + GAP, width, 3), 255, np.uint8)
    for i, line in enumerate(_wrap(label, 24)[:4]):
        y = CELL // 2 - 8 * len(_wrap(label, 24)[:4]) + 16 * i + 12
        cv2.putText(row, line, (6, y), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    for i, image in enumerate(images):
        x = LABEL_WIDTH + i * (CELL + GAP)
        row[:CELL, x : x + CELL] = cell(image)
    return row


def _wrap(text: str, width: int) -> list[str]:
    lines: list[str] = []
    for word in text.split():
        if lines and len(lines[-1]) + 1 + len(word) <= width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return lines


def table(rows: list[tuple[str, Any]], truth_cf: float) -> str:
    head = "| model | PSNR (dB) ↑ | SSIM ↑ | CIEDE2000 ↓ | colourfulness | ΔCF |"
    lines = [head, "|---|---|---|---|---|---|"]
    for label, s in rows:
        lines.append(
            f"| {label} | {s.psnr:.2f} | {s.ssim:.4f} | {s.ciede2000:.2f} | "
            f"{s.colorfulness:.1f} | {s.delta_cf:+.1f} |"
        )
    lines.append(f"| ground truth | — | — | 0 | {truth_cf:.1f} | 0 |")
    return "\n".join(lines)


ROW_HEIGHT = CELL + GAP


def scores_of(stored: dict[str, float]):
    from vidcolor.metrics import ColorScores

    return ColorScores(**{f.name: stored[f.name] for f in fields(ColorScores)})


def folder_fingerprint(root: Path) -> str:
    """Which files a validation folder holds (names and sizes): rows of another folder of the
    same name must not join a table."""
    from vidcolor.train.data import EvalSource

    source = EvalSource(root)
    digest = hashlib.sha256()
    for path in [*source.photos, *source.shards]:
        name = path.relative_to(root).as_posix() if path != root else path.name
        digest.update(f"{name}\t{path.stat().st_size}\n".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()[:16]


def render_tables(folders: dict, models: list[dict], render_size: int) -> str:
    tables = []
    for name, folder in folders.items():
        rows = [("grey baseline", scores_of(folder["grey"]))]
        rows += [(str(model["label"]), scores_of(model[name])) for model in models]
        tables.append(
            f"**{name}** ({int(folder['images'])} photos, render size {render_size})\n\n"
            + table(rows, float(folder["truth_colorfulness"]))
        )
    return "\n\n".join(tables) + "\n"


def load_previous(out: Path, data: list[Path], photos: list[str], render_size: int) -> dict:
    """The report and grid already in OUT, for --add: rows whose models need not be at hand
    (trained in another sitting, on another machine). They must have been made the same way,
    on the same photos."""
    try:
        report = json.loads((out / "recipes.json").read_text())
    except (OSError, ValueError) as exc:
        raise SystemExit(
            f"recipes.py: --add needs {out}/recipes.json from an earlier run: {exc}"
        ) from None
    try:
        made = {
            "render_size": render_size,
            "photos": photos,
            "data": {root.name: folder_fingerprint(root) for root in data},
        }
        before = {key: report[key] for key in ("render_size", "photos")}
        before["data"] = {name: f["fingerprint"] for name, f in report["data"].items()}
        render_tables(report["data"], report["models"], render_size)  # every row readable
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise SystemExit(
            f"recipes.py: --add: {out}/recipes.json is not this script's report ({exc!r})"
        ) from None
    if before != made:
        raise SystemExit(f"recipes.py: --add: {out} was made with {before}, not {made}")
    picture = cv2.imread(str(out / "recipes.png"), cv2.IMREAD_COLOR)
    rows = len(report["models"]) + 2  # the grey input on top, the truth at the bottom
    shape = (rows * ROW_HEIGHT, LABEL_WIDTH + len(photos) * (CELL + GAP), 3)
    if picture is None or picture.shape != shape:
        raise SystemExit(f"recipes.py: --add: {out}/recipes.png is not a grid of {rows} rows")
    report["strips"] = [
        cv2.cvtColor(picture[i * ROW_HEIGHT : (i + 1) * ROW_HEIGHT], cv2.COLOR_BGR2RGB)
        for i in range(rows)
    ]
    return report


def relabel(models: list[dict], strips: list[np.ndarray], renames: list[list[str]]) -> None:
    """Rename stored rows: the label in the report and the label cell of the row's strip."""
    for old, new in renames:
        labels = [model["label"] for model in models]
        if old not in labels:
            raise SystemExit(f"recipes.py: --relabel: no row is labelled {old!r}")
        if new in labels:
            raise SystemExit(f"recipes.py: --relabel: a row is already labelled {new!r}")
        index = labels.index(old)
        models[index]["label"] = new
        strips[1 + index][:, :LABEL_WIDTH] = grid_row(new, [])[:, :LABEL_WIDTH]


def move(models: list[dict], strips: list[np.ndarray], moves: list[list[str]]) -> None:
    """Put a row right after another, in the tables and the grid alike: rows added in later
    sittings can stand beside their kind instead of at the end."""
    for label, after in moves:
        labels = [model["label"] for model in models]
        index = labels.index(label)
        entry, strip = models.pop(index), strips.pop(1 + index)
        target = [model["label"] for model in models].index(after) + 1
        models.insert(target, entry)
        strips.insert(1 + target, strip)


def check_moves(moves: list[list[str]], labels: list[str]) -> None:
    """Before any model is scored: a move that names no row fails at once, not after minutes."""
    for label, after in moves:
        for name in (label, after):
            if name not in labels:
                raise SystemExit(f"recipes.py: --move: no row is labelled {name!r}")
        if label == after:
            raise SystemExit(f"recipes.py: --move: a row cannot go after itself ({label!r})")


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def write_outputs(out: Path, text: str, report: dict, strips: list[np.ndarray]) -> None:
    """All three files or none changed: each is written aside, then renamed over the old."""
    from vidcolor.atomic import atomic_output

    out.mkdir(parents=True, exist_ok=True)
    picture = cv2.cvtColor(np.concatenate(strips, axis=0), cv2.COLOR_RGB2BGR)
    ok, png = cv2.imencode(".png", picture)
    if not ok:
        raise SystemExit("recipes.py: could not encode the grid")
    contents = {
        "recipes.md": text.encode(),
        "recipes.json": (json.dumps(report, indent=2, default=str) + "\n").encode(),
        "recipes.png": png.tobytes(),
    }
    with contextlib.ExitStack() as stack:
        parts = {name: stack.enter_context(atomic_output(out / name, True)) for name in contents}
        for name, part in parts.items():
            part.write_bytes(contents[name])
    # (the renames happen as the stack closes, after every file is written in full)


def main() -> None:
    try:
        run(parse_args())
    except (VidcolorError, OSError) as exc:
        raise SystemExit(f"recipes.py: {one_line(str(exc))}") from None


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=parse_model, action="append", default=[])
    parser.add_argument(
        "--ab-scale",
        type=parse_scale,
        action="append",
        default=[],
        help="LABEL=S: multiply that model's a,b by S (the saturation-knob reference)",
    )
    parser.add_argument("--data", type=Path, action="append")
    parser.add_argument("--photo", action="append", help="FOLDER/FILE for the grid (6)")
    parser.add_argument("--render-size", type=positive, default=160)
    parser.add_argument("--limit", type=positive, default=None, help="photos per folder")
    parser.add_argument("--threads", type=positive, default=None)
    parser.add_argument(
        "--backend",
        default="auto",
        choices=["auto", "onnxruntime", "torch", "tensorrt"],
        help="as vidcolor --backend (auto: vidcolor's default, what the tables are made with)",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "recipes")
    parser.add_argument(
        "--add",
        action="store_true",
        help="keep the rows already in OUT and add these models (a label already there is "
        "scored again and replaced in place)",
    )
    parser.add_argument(
        "--relabel",
        nargs=2,
        action="append",
        default=[],
        metavar=("OLD", "NEW"),
        help="with --add: rename a row already in OUT, in the tables and the grid (say what a "
        "row's model was when the table's terms change, without the model at hand)",
    )
    parser.add_argument(
        "--move",
        nargs=2,
        action="append",
        default=[],
        metavar=("LABEL", "AFTER"),
        help="with --add: put row LABEL (stored or given) right after row AFTER",
    )
    args = parser.parse_args()
    if not args.model and not args.relabel and not args.move:
        parser.error("give --model LABEL=PATH (or, with --add, --relabel OLD NEW or --move)")
    if (args.relabel or args.move) and not args.add:
        parser.error("--relabel and --move change rows already in OUT: each needs --add")
    unknown = {label for label, _ in args.ab_scale} - {label for label, _ in args.model}
    if unknown:
        parser.error(f"--ab-scale names no --model label: {', '.join(sorted(unknown))}")
    given = [label for label, _ in args.model] + [new for _, new in args.relabel]
    bad = [label for label in given if "|" in label or "\n" in label or not label.strip()]
    if bad:
        parser.error(f"a label may not be blank or hold '|' or a line break: {bad[0]!r}")
    return args


def run(args: argparse.Namespace) -> None:
    data = args.data or DATA
    scales = dict(args.ab_scale)
    photo_specs = args.photo or PHOTOS
    photos = [read_photo(spec, data) for spec in photo_specs]

    from vidcolor.train.evaluate import grey_rgb

    from vidcolor.api import colorize_array
    from vidcolor.color import as_float_rgb
    from vidcolor.engines import load_engine

    if args.add:
        previous = load_previous(args.out, data, photo_specs, args.render_size)
        folders, models = previous["data"], previous["models"]
        strips = previous["strips"]
        relabel(models, strips, args.relabel)
        new_labels = [label for label, _ in args.model]
        check_moves(args.move, [model["label"] for model in models] + new_labels)
    else:
        folders, models = {}, []
        grey = grid_row("grey input", [grey_rgb(as_float_rgb(p)) for p in photos])
        truth = grid_row("ground truth", [as_float_rgb(p) for p in photos])
        strips = [grey, truth]
    for label, path in args.model:
        engine = load_engine(
            path, backend=args.backend, render_size=args.render_size, threads=args.threads
        )
        scale = scales.get(label)
        if scale is not None:
            engine = ScaledEngine(engine, scale)
        scored = score_model(engine, data, args.render_size, args.limit, grey=not folders)
        entry: dict[str, object] = {
            "label": label,
            "path": str(path),
            "engine": engine.name,
            "ab_scale": scale,
            "facts": training_facts(path),
        }
        for root in data:
            evaluation, seconds = scored[root.name]
            if evaluation.grey is not None:
                folders[root.name] = {
                    "images": evaluation.images,
                    "fingerprint": folder_fingerprint(root),
                    "truth_colorfulness": evaluation.truth_colorfulness,
                    "grey": asdict(evaluation.grey),
                }
            if evaluation.images != folders[root.name]["images"]:
                raise SystemExit(
                    f"recipes.py: {label} was scored on {evaluation.images} photos of "
                    f"{root.name}, the other rows on {folders[root.name]['images']} (--limit)"
                )
            entry[root.name] = {"seconds": round(seconds, 1), **asdict(evaluation.model)}
            print(f"{label} on {root.name}: {evaluation.images} photos in {seconds:.0f} s")
        strip = grid_row(label, [colorize_array(p, engine, args.render_size) for p in photos])
        labels = [model["label"] for model in models]
        if label in labels:  # scored again: replaced where it stands
            models[labels.index(label)] = entry
            strips[1 + labels.index(label)] = strip
        else:
            models.append(entry)
            strips.insert(len(strips) - 1, strip)

    move(models, strips, args.move)
    text = render_tables(folders, models, args.render_size)
    report = {
        "render_size": args.render_size,
        "photos": photo_specs,
        "data": folders,
        "models": models,
    }
    write_outputs(args.out, text, report, strips)
    print(text)
    print(f"wrote {args.out}/recipes.md, recipes.json, recipes.png", file=sys.stderr)


if __name__ == "__main__":
    main()
