"""``vidcolor deflicker IN -o OUT``: steady the colour of a film colourised by any tool.

Thin over ``vidcolor.temporal.deflicker``: the luminance, frames, timestamps, audio and
subtitles stay as they are; only the colour is smoothed along the motion, and reset at cuts.
"""

from __future__ import annotations

import logging
from pathlib import Path

import click

from vidcolor.cli.common import NON_EMPTY_PATH, Progress, film_output_options
from vidcolor.errors import one_line
from vidcolor.options import (
    DEFAULT_RENDER_SIZE,
    DEFAULT_TEMPORAL_STRENGTH,
    MAX_TEMPORAL_STRENGTH,
    EncodeSettings,
    RunOptions,
)


@click.command(
    "deflicker",
    context_settings={"help_option_names": ["-h", "--help"]},
    short_help="Steady the colour of a film colourised by any tool.",
)
@click.argument("source", type=NON_EMPTY_PATH)
@click.option(
    "-o",
    "--output",
    required=True,
    type=NON_EMPTY_PATH,
    help="Output film.",
)
@click.option(
    "--strength",
    default=DEFAULT_TEMPORAL_STRENGTH,
    show_default=True,
    type=click.FloatRange(0, MAX_TEMPORAL_STRENGTH),
    help="How strongly colour is steadied along the motion (0: not at all).",
)
@click.option(
    "--render-size",
    default=DEFAULT_RENDER_SIZE,
    show_default=True,
    type=click.IntRange(64, 2048),
    help="Short side (px) at which flow is measured and colour smoothed.",
)
@film_output_options
def deflicker_command(
    source: Path,
    output: Path,
    strength: float,
    render_size: int,
    codec: str,
    crf: int | None,
    preset: str,
    max_pixels: int,
    allow_truncated: bool,
    overwrite: bool,
    quiet: bool,
) -> None:
    """Steady the colour of SOURCE, a film colourised by any tool, into OUTPUT.

    The film's luminance, frames, timestamps, audio and subtitles are kept; its colour is
    smoothed along the motion (optical flow), never across occlusions or shot cuts.
    """
    from vidcolor.temporal.deflicker import deflicker_video

    if quiet:
        logging.getLogger().setLevel(logging.ERROR)
    options = RunOptions(
        render_size=render_size,
        encode=EncodeSettings(codec=codec, crf=crf, preset=preset),
        overwrite=overwrite,
        max_pixels=max_pixels,
        allow_truncated=allow_truncated,
        temporal_strength=strength,
    )
    progress = Progress(source.name, quiet)
    try:
        result = deflicker_video(
            source, output, options, on_start=progress.start, on_frame=progress.step
        )
    finally:
        progress.close()
    if not quiet:
        click.echo(one_line(result.summary()), err=True)
