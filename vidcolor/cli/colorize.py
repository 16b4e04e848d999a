"""``vidcolor [colorize] INPUT... -o OUTPUT``: colourise films, stills and folders of them.

One bad file in a folder is reported on its own line and the others still run; the exit
status is then 1 and the last line says how many failed.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import click

from vidcolor.cli.common import (
    NON_EMPTY_PATH,
    Progress,
    colour_options,
    engine_options,
    film_output_options,
    run_options,
)
from vidcolor.errors import VidcolorError, one_line


@click.command(
    "colorize",
    context_settings={"help_option_names": ["-h", "--help"]},
    short_help="Colourise films, photos and folders (the default command).",
)
@click.argument("inputs", nargs=-1, required=True, type=NON_EMPTY_PATH)
@click.option(
    "-o",
    "--output",
    required=True,
    type=NON_EMPTY_PATH,
    help="Output file, or folder when INPUT is a folder or several files.",
)
@engine_options
@colour_options
@film_output_options
def colorize_command(
    inputs: tuple[Path, ...],
    output: Path,
    device: str,
    backend: str,
    precision: str,
    render_size: int,
    codec: str,
    crf: int | None,
    preset: str,
    batch_size: int,
    weights: Path | None,
    max_pixels: int,
    allow_truncated: bool,
    no_temporal: bool,
    temporal_strength: float,
    overwrite: bool,
    quiet: bool,
) -> None:
    """Colourise films, photos and folders of scans (the default command).

    INPUT is a video, an image or a folder of them; the kind is read from the content.
    """
    from vidcolor.api import colorize
    from vidcolor.engines import load_engine
    from vidcolor.plan import plan_jobs

    if quiet:
        logging.getLogger().setLevel(logging.ERROR)
    options = run_options(
        render_size,
        batch_size,
        codec,
        crf,
        preset,
        overwrite,
        max_pixels,
        allow_truncated,
        no_temporal,
        temporal_strength,
    )
    plan = plan_jobs(inputs, output, codec)
    engine = load_engine(weights, device, backend, precision, batch_size, render_size)
    failures = len(plan.failures)
    for message in plan.failures:
        click.echo(f"vidcolor: error: {one_line(message)}", err=True)
    frames, seconds, done = 0, 0.0, 0
    for source, target in plan.jobs:
        progress = Progress(source.name, quiet)  # films only: stills never start it
        try:
            if plan.many:
                _make_folder(target.parent)
            result = colorize(
                source,
                target,
                options,
                engine=engine,
                on_start=progress.start,
                on_frame=progress.step,
            )
        except VidcolorError as exc:
            if not plan.many:
                raise
            failures += 1  # one bad file in a folder does not stop the others
            click.echo(f"vidcolor: error: {one_line(str(exc))}", err=True)
            continue
        except Exception as exc:  # a bug on one file must not end a thousand-file job
            if not plan.many or os.environ.get("VIDCOLOR_DEBUG"):
                raise
            failures += 1
            click.echo(
                f"vidcolor: error: {one_line(str(source))}: internal error: "
                f"{type(exc).__name__}: {one_line(str(exc))}",
                err=True,
            )
            continue
        finally:
            progress.close()
        done += 1
        frames += result.frames
        seconds += result.seconds
        if not quiet and not plan.many:
            click.echo(one_line(f"{result.summary()}; engine {engine.name}"), err=True)
    total = len(plan.jobs) + len(plan.failures)
    if plan.many and not quiet:
        click.echo(
            one_line(
                f"{done} of {total} files -> {output}: {frames} frames and images "
                f"in {seconds:.1f} s; engine {engine.name}"
            ),
            err=True,
        )
    if failures:
        raise VidcolorError(f"{failures} of {total} files failed")


def _make_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise VidcolorError(f"{folder}: cannot create folder ({exc.strerror})") from exc
