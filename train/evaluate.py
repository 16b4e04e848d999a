"""Score a generator on colour photos beside the grey baseline.

Each photo is colourised from its own luminance by ``vidcolor.api.colorize_array`` with an
``Engine``: the very code path (render size, resizing, rejoin with full-resolution L) that
``vidcolor photo.jpg`` runs, so the scores are what users get. Training's periodic validation
calls the same function on the live model (``TorchEngine.from_model``).

``python -m vidcolor.train.evaluate MODEL DATA...`` is ``vidcolor eval``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from vidcolor.api import colorize_array
from vidcolor.color import as_float_rgb, join_lab, luminance
from vidcolor.engines.base import Engine
from vidcolor.errors import VidcolorError
from vidcolor.metrics import ColorScores, mean_scores, score


@dataclass(frozen=True)
class Evaluation:
    """Mean scores of the model (and of the grey baseline) over ``images`` photos."""

    images: int
    model: ColorScores
    grey: ColorScores | None
    truth_colorfulness: float

    def flat(self) -> dict[str, float]:
        """``model_psnr`` ... ``truth_colorfulness``: the columns of the training log."""
        row = {f"model_{k}": round(v, 4) for k, v in asdict(self.model).items()}
        row["truth_colorfulness"] = round(self.truth_colorfulness, 4)
        if self.grey is not None:
            row.update({f"grey_{k}": round(v, 4) for k, v in asdict(self.grey).items()})
        return row

    def to_json(self) -> dict[str, object]:
        def rounded(scores: ColorScores) -> dict[str, float]:
            return {k: round(v, 4) for k, v in asdict(scores).items()}

        return {
            "images": self.images,
            "model": rounded(self.model),
            "grey": None if self.grey is None else rounded(self.grey),
            "truth": {"colorfulness": round(self.truth_colorfulness, 4)},
        }


def grey_rgb(reference: np.ndarray) -> np.ndarray:
    """The grey baseline: the photo's own L with its colour removed (a = b = 0)."""
    lum = luminance(reference)
    return join_lab(lum, np.zeros((*lum.shape, 2), np.float32))


def evaluate_images(
    engine: Engine,
    images: Iterable[tuple[str, np.ndarray]],
    render_size: int,
    with_grey: bool = False,
    on_image: Callable[[], None] | None = None,
) -> Evaluation:
    """Colourise each (name, pixels) photo as vidcolor does and score it against the original."""
    ours: list[ColorScores] = []
    grey: list[ColorScores] = []
    truth_cf: list[float] = []
    for _, pixels in images:
        reference = as_float_rgb(pixels)
        result = score(reference, colorize_array(pixels, engine, render_size))
        ours.append(result)
        truth_cf.append(result.colorfulness - result.delta_cf)
        if with_grey:
            grey.append(score(reference, grey_rgb(reference)))
        if on_image is not None:
            on_image()
    if not ours:
        raise VidcolorError("no photos to evaluate on")
    return Evaluation(
        images=len(ours),
        model=mean_scores(ours),
        grey=mean_scores(grey) if with_grey else None,
        truth_colorfulness=float(np.mean(truth_cf)),
    )


def format_table(evaluation: Evaluation, title: Sequence[str] = ()) -> str:
    """A Markdown table like the README's: model, grey baseline and ground truth."""

    def row(label: str, s: ColorScores) -> list[str]:
        return [
            label,
            f"{s.psnr:.2f}",
            f"{s.ssim:.4f}",
            f"{s.colorfulness:.1f}",
            f"{s.delta_cf:+.1f}",
            f"{s.ciede2000:.2f}",
        ]

    rows = [["", "PSNR (dB) ↑", "SSIM ↑", "colourfulness", "ΔCF", "CIEDE2000 ↓"]]
    rows.append(row("model", evaluation.model))
    if evaluation.grey is not None:
        rows.append(row("grey baseline", evaluation.grey))
    rows.append(["ground truth", "—", "—", f"{evaluation.truth_colorfulness:.1f}", "0", "0"])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in rows
    ]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join([*title, *lines])


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m vidcolor.train.evaluate``: the same command as ``vidcolor eval``."""
    from vidcolor.cli.train import eval_command, run_standalone

    run_standalone(eval_command, "python -m vidcolor.train.evaluate", argv)


if __name__ == "__main__":
    main()
