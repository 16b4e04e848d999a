"""``vidcolor eval-video REFERENCE VIDEO...``: how steady colourised films are.

Thin over ``vidcolor.temporal.evaluate``: flow from REFERENCE, warp error on RGB and on a,b,
colour shift between frames, and PSNR / CIEDE2000 when REFERENCE is in colour.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import click

from vidcolor.cli.common import NON_EMPTY_PATH
from vidcolor.errors import one_line
from vidcolor.options import DEFAULT_MAX_PIXELS


def _number(value: float | None, digits: int) -> str:
    if value is None or math.isnan(value):
        return "—"
    return f"{value:.{digits}f}"


@click.command(
    "eval-video",
    context_settings={"help_option_names": ["-h", "--help"]},
    short_help="Temporal consistency of films: warp error, colour flicker.",
)
@click.argument("reference", type=NON_EMPTY_PATH)
@click.argument("videos", nargs=-1, required=True, type=NON_EMPTY_PATH)
@click.option(
    "--size",
    type=click.IntRange(min=16),
    default=None,
    help="Compare at this short side (px); default: the reference's own size.",
)
@click.option(
    "--flow",
    "flow_preset",
    default="medium",
    show_default=True,
    type=click.Choice(["ultrafast", "fast", "medium"]),
    help="DIS optical flow preset for the reference's motion.",
)
@click.option(
    "--max-pixels",
    default=DEFAULT_MAX_PIXELS,
    show_default=True,
    type=click.IntRange(1),
    help="Largest frame (width x height) to decode.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def eval_video_command(
    reference: Path,
    videos: tuple[Path, ...],
    size: int | None,
    flow_preset: str,
    max_pixels: int,
    as_json: bool,
) -> None:
    """Score each VIDEO's temporal consistency, with optical flow from REFERENCE.

    REFERENCE is the film the VIDEOs were made from (the black-and-white source, or the colour
    original); every film must have the same frames. Reported: warp error (Lai et al. 2018,
    occlusion-masked) on RGB in 0..1 and on Lab a,b only (chroma warp error, Lab units
    squared); how far the mean colour and the colour distribution move between frames; and
    PSNR and CIEDE2000 against REFERENCE when it is in colour. Pairs across shot cuts of
    REFERENCE are left out. REFERENCE's own figures come first, as the level of a real film.
    """
    from tqdm import tqdm

    from vidcolor.errors import VidcolorError
    from vidcolor.media.probe import MediaKind, detect_kind
    from vidcolor.temporal.evaluate import evaluate_videos

    for film in (reference, *videos):  # FIFOs, empty files and stills: one clear line first
        if detect_kind(film) is not MediaKind.VIDEO:
            raise VidcolorError(f"{one_line(str(film))}: is an image; eval-video compares films")

    with tqdm(
        desc=one_line(reference.name),
        unit="frame",
        file=sys.stderr,
        leave=False,
        disable=None,
    ) as bar:
        evaluation = evaluate_videos(
            reference,
            list(videos),
            size=size,
            flow_preset=flow_preset,
            max_pixels=max_pixels,
            on_frame=lambda: bar.update(1),
        )
    if as_json:
        report = {
            "reference": evaluation.reference.to_json(),
            "videos": [v.to_json() for v in evaluation.videos],
            "cuts": evaluation.cuts,
            "colour_reference": evaluation.colour_reference,
            "size": list(evaluation.size),
            "flow": f"DIS {flow_preset}",
        }
        click.echo(json.dumps(_finite(report), indent=2, allow_nan=False))
        return
    ref = evaluation.reference
    width, height = evaluation.size
    click.echo(
        one_line(
            f"{ref.path}: {ref.frames} frames at {width}x{height}, {ref.pairs} pairs scored, "
            f"{len(evaluation.cuts)} cuts left out; flow DIS {flow_preset} from the reference"
        )
        + "\n"
    )
    header = (
        "| | warp error (RGB) | chroma warp error | x reference | mean ab change p95 | ab shift |"
    )
    rule = "|---|---|---|---|---|---|"
    if evaluation.colour_reference:
        header += " PSNR | CIEDE2000 |"
        rule += "---|---|"
    click.echo(header)
    click.echo(rule)
    for name, scores in [("reference", ref), *((str(v.path), v) for v in evaluation.videos)]:
        ratio = (  # against a black-and-white reference's (about 0) it says nothing
            scores.chroma_warp_error / ref.chroma_warp_error
            if evaluation.colour_reference and ref.chroma_warp_error > 0
            else float("nan")
        )
        row = (
            f"| {one_line(name)} | {_number(scores.warp_error, 5)} | "
            f"{_number(scores.chroma_warp_error, 2)} | {_number(ratio, 2)} | "
            f"{_number(scores.ab_change_p95, 2)} | {_number(scores.ab_shift, 2)} |"
        )
        if evaluation.colour_reference:
            row += f" {_number(scores.psnr, 2)} | {_number(scores.ciede2000, 2)} |"
        click.echo(row)


def _finite(value: object) -> object:
    """JSON has no Infinity or NaN (identical films have infinite PSNR): they become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value
