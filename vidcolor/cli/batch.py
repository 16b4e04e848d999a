"""``vidcolor batch INPUT... -o OUTDIR``: colourise an archive on Ray, resumably.

Where ``vidcolor`` itself runs one file in one process (threads overlap decode, inference and
encode), ``batch`` hands an archive to Ray actors, on this machine or a cluster, and records
each finished file in OUTDIR, so a killed job re-run finishes what is left. See
``vidcolor.batch.driver``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import click
from tqdm import tqdm

from vidcolor.cli.common import (
    NON_EMPTY_PATH,
    colour_options,
    engine_options,
    film_output_options,
    finite,
    run_options,
)
from vidcolor.errors import VidcolorError, one_line


@click.command(
    "batch",
    context_settings={"help_option_names": ["-h", "--help"]},
    short_help="Colourise an archive on Ray: resumable, one bad file never stops the rest.",
)
@click.argument("inputs", nargs=-1, required=True)
@click.option(
    "-o",
    "--output",
    "outdir",
    required=True,
    type=NON_EMPTY_PATH,
    help="Output folder: mirrors the inputs' folders; archives become folders.",
)
@click.option(
    "--address",
    default=None,
    help="Ray cluster to run on (default: $RAY_ADDRESS, else a local Ray for this job).",
)
@click.option(
    "--workers",
    type=click.IntRange(1),
    default=None,
    help="Engine workers (default: one per GPU, else one per --threads CPUs).",
)
@click.option(
    "--threads",
    type=click.IntRange(1),
    default=None,
    help="CPU threads of each worker: its engine, decoder and encoder (default: 1 for CPU "
    "workers; FFmpeg's own choice for GPU workers).",
)
@click.option(
    "--gpus-per-worker",
    type=click.FloatRange(0, 1, min_open=True),
    default=1.0,
    show_default=True,
    callback=finite,
    help="GPU share of each GPU worker: 0.25 puts 4 workers on each GPU (for nodes whose "
    "CPU stages, not GPUs, bound the job).",
)
@click.option(
    "--chunk-seconds",
    type=click.FloatRange(0),
    default=60.0,
    show_default=True,
    callback=finite,
    help="Films longer than 1.5 chunks are split at keyframes into chunks of about this "
    "length, colourised on all workers, and joined (0: never split).",
)
@click.option(
    "--verify",
    is_flag=True,
    help="Read every finished output in full (sha256) before skipping it, not only its size "
    "and time.",
)
@engine_options
@colour_options
@film_output_options
def batch_command(
    inputs: tuple[str, ...],
    outdir: Path,
    address: str | None,
    workers: int | None,
    threads: int | None,
    gpus_per_worker: float,
    chunk_seconds: float,
    verify: bool,
    device: str,
    backend: str,
    precision: str,
    render_size: int,
    batch_size: int,
    weights: Path | None,
    no_temporal: bool,
    temporal_strength: float,
    codec: str,
    crf: int | None,
    preset: str,
    max_pixels: int,
    allow_truncated: bool,
    overwrite: bool,
    quiet: bool,
) -> None:
    """Colourise films, photos, folders, globs, manifests (.txt/.csv) and zip/tar archives of
    images into OUTDIR, on Ray actors. Re-running the same command skips what is done.

    A JSON report is written to OUTDIR/vidcolor-report.json; the exit status is 1 when any
    input failed (each is named on stderr and in the report).
    """
    from vidcolor.batch.driver import BatchSettings, run_batch
    from vidcolor.batch.worker import EngineChoice
    from vidcolor.engines import check_weights

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
    from vidcolor.media.encode import codec_profile

    codec_profile(options.encode)  # a bad preset fails now, not on every worker
    check_weights(weights)
    choice = EngineChoice(weights, device, backend, precision)
    settings = BatchSettings(
        address, workers, threads, chunk_seconds, gpus_per_worker=gpus_per_worker, verify=verify
    )
    bar = _Bar(quiet)

    def message(line: str) -> None:
        if quiet and not line.startswith("error"):
            return
        bar.write(f"vidcolor: {one_line(line)}")

    try:
        report = run_batch(inputs, outdir, options, choice, settings, bar.update, message)
    finally:
        bar.close()
    if not quiet:
        click.echo(one_line(report.summary()), err=True)
    if report.failed:
        raise VidcolorError(
            f"{len(report.failed)} of {report.items} items failed (listed in "
            f"{os.path.join(str(outdir), 'vidcolor-report.json')})"
        )


class _Bar:
    """One bar for the whole job: items, with frames and fps beside them."""

    def __init__(self, quiet: bool):
        self.disable = True if quiet else None  # None: a bar only on a terminal
        self.bar: tqdm | None = None

    def update(self, report, finished: int) -> None:  # type: ignore[no-untyped-def]
        total = report.items - report.skipped - len([f for f in report.failed if not f["input"]])
        if self.bar is None:
            self.bar = tqdm(
                total=max(total, 0),
                unit="item",
                disable=self.disable,
                dynamic_ncols=True,
                leave=False,
            )
        self.bar.n = finished
        elapsed = self.bar.format_dict.get("elapsed") or 0
        fps = report.frames / elapsed if elapsed else 0.0
        self.bar.set_postfix_str(f"{report.frames} frames, {fps:.1f} fps", refresh=False)
        self.bar.refresh()

    def write(self, line: str) -> None:
        if self.bar is not None:
            self.bar.write(line, file=click.get_text_stream("stderr"))
        else:
            click.echo(line, err=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
