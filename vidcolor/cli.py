"""``vidcolor INPUT... -o OUTPUT``: thin click front end over ``vidcolor.api``.

User mistakes arrive as ``VidcolorError`` and leave as one line on stderr with exit status 1.
"""

from __future__ import annotations

import logging
import signal
import sys
from pathlib import Path
from typing import NoReturn

import click
from tqdm import tqdm

from vidcolor import __version__
from vidcolor.api import (
    DEFAULT_BATCH,
    DEFAULT_RENDER_SIZE,
    Result,
    colorize,
    plan_folder,
)
from vidcolor.engines import Engine, load_engine
from vidcolor.errors import VidcolorError
from vidcolor.media.encode import CODECS
from vidcolor.media.probe import check_readable


def _jobs(inputs: tuple[Path, ...], output: Path) -> list[tuple[Path, Path]]:
    """Expand the command line into (input, output) pairs, mirroring folders."""
    for path in inputs:
        check_readable(path)
    many = len(inputs) > 1 or inputs[0].is_dir()
    if not many:
        return [(inputs[0], output)]
    if output.exists() and not output.is_dir():
        raise VidcolorError(f"{output}: must be a folder when colourising several inputs")
    if not output.parent.is_dir():
        raise VidcolorError(f"{output}: parent folder {output.parent} does not exist")
    jobs: list[tuple[Path, Path]] = []
    for path in inputs:
        if path.is_dir():
            found = list(plan_folder(path, output))
            if not found:
                raise VidcolorError(f"{path}: folder holds no images or videos")
            jobs.extend(found)
        else:
            jobs.append((path, output / path.name))
    return jobs


class _Progress:
    """A tqdm bar on terminals (frames, fps, ETA); silent when piped or --quiet."""

    def __init__(self, label: str, quiet: bool):
        self.label = label
        self.disable = True if quiet else None  # None: tqdm shows a bar only on a TTY
        self.bar: tqdm | None = None

    def start(self, total: int) -> None:
        self.bar = tqdm(
            total=total or None,
            desc=self.label,
            unit="frame",
            disable=self.disable,
            dynamic_ncols=True,
            leave=False,
        )

    def step(self) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(path_type=Path),
    help="Output file, or folder when INPUT is a folder or several files.",
)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option(
    "--render-size",
    default=DEFAULT_RENDER_SIZE,
    show_default=True,
    type=click.IntRange(64, 2048),
    help="Short side (px) at which colour is predicted; luminance stays full size.",
)
@click.option(
    "--codec",
    default="h264",
    show_default=True,
    type=click.Choice(list(CODECS)),
    help="Video codec: h264 plays in browsers; ffv1 or prores for archival masters.",
)
@click.option(
    "--crf",
    type=click.IntRange(0, 63),
    default=None,
    help="Quality for h264/h265/vp9/av1 (lower is better; h264 default 18).",
)
@click.option("--preset", default="medium", show_default=True, help="x264/x265 speed preset.")
@click.option(
    "--batch-size",
    default=DEFAULT_BATCH,
    show_default=True,
    type=click.IntRange(1, 256),
    help="Frames per inference batch.",
)
@click.option(
    "--model",
    "weights",
    type=click.Path(path_type=Path),
    default=None,
    help="Generator weights (.safetensors); default: the shipped model.",
)
@click.option("--overwrite", is_flag=True, help="Replace existing outputs.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar and no summary.")
@click.version_option(__version__, prog_name="vidcolor")
def main(
    inputs: tuple[Path, ...],
    output: Path,
    device: str,
    render_size: int,
    codec: str,
    crf: int | None,
    preset: str,
    batch_size: int,
    weights: Path | None,
    overwrite: bool,
    quiet: bool,
) -> None:
    """Colourise black-and-white films, photos and folders of scans.

    INPUT is a video, an image or a folder of them; the kind is read from the content.
    """
    logging.basicConfig(
        level=logging.ERROR if quiet else logging.WARNING, format="vidcolor: warning: %(message)s"
    )
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        jobs = _jobs(inputs, output)
        engine = load_engine(weights, device)
    except VidcolorError as exc:
        _fail(str(exc))
    many = len(jobs) > 1 or inputs[0].is_dir()
    results: list[Result] = []
    failures = 0
    for source, target in jobs:
        try:
            if many:
                _make_folder(target.parent)
            results.append(
                _run(
                    source,
                    target,
                    engine,
                    render_size,
                    codec,
                    crf,
                    preset,
                    batch_size,
                    overwrite,
                    quiet,
                )
            )
        except VidcolorError as exc:
            if not many:
                _fail(str(exc))
            failures += 1  # one bad file in a folder does not stop the others
            click.echo(f"vidcolor: error: {exc}", err=True)
        except (KeyboardInterrupt, Terminated) as exc:
            status = 143 if isinstance(exc, Terminated) else 130
            _fail("interrupted; no partial output was kept", status=status)
    if not quiet:
        if not many:
            click.echo(results[0].summary(), err=True)
        else:
            frames = sum(r.frames for r in results)
            seconds = sum(r.seconds for r in results)
            click.echo(
                f"{len(results)} of {len(jobs)} files -> {output}: {frames} frames and "
                f"images in {seconds:.1f} s",
                err=True,
            )
    if failures:
        _fail(f"{failures} of {len(jobs)} files failed")


class Terminated(BaseException):
    """SIGTERM, raised in the main thread so that temporary outputs are cleaned up."""


def _on_sigterm(signum: int, frame: object) -> None:
    raise Terminated()


def _make_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise VidcolorError(f"{folder}: cannot create folder ({exc.strerror})") from exc


def _fail(message: str, status: int = 1) -> NoReturn:
    click.echo(f"vidcolor: error: {message}", err=True)
    sys.exit(status)


def _run(
    source: Path,
    output: Path,
    engine: Engine,
    render_size: int,
    codec: str,
    crf: int | None,
    preset: str,
    batch_size: int,
    overwrite: bool,
    quiet: bool,
) -> Result:
    progress = _Progress(source.name, quiet)  # shown for films only: stills never start it
    try:
        return colorize(
            source,
            output,
            engine=engine,
            render_size=render_size,
            codec=codec,
            crf=crf,
            preset=preset,
            batch_size=batch_size,
            overwrite=overwrite,
            on_start=progress.start,
            on_frame=progress.step,
        )
    finally:
        progress.close()


if __name__ == "__main__":
    main()
