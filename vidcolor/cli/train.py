"""``vidcolor train`` and ``vidcolor eval``: train a generator from a recipe, score any model.

Nothing heavy is imported here (torch, the media libraries, the training code): the commands
import what they need when they run, so ``vidcolor --help`` stays fast. Problems a user can fix
are raised as ``VidcolorError``; the ``vidcolor`` group prints them as one line.
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

import click

from vidcolor.cli.common import MAX_PIXELS_OPTION, NON_EMPTY_PATH, engine_options
from vidcolor.errors import VidcolorError, one_line
from vidcolor.options import DEFAULT_RENDER_SIZE

_CONTEXT = {"help_option_names": ["-h", "--help"]}


def _finite(value: float | None, name: str) -> float | None:
    """click's FloatRange lets nan through (every comparison with it is false)."""
    if value is not None and not math.isfinite(value):
        raise click.BadParameter(f"{value} is not a number in range", param_hint=name)
    return value


@click.command(
    "train", context_settings=_CONTEXT, short_help="Train a generator from a YAML recipe."
)
@click.argument("config", type=NON_EMPTY_PATH)
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a recipe value, e.g. --set budget.max_minutes=60 --set device=cuda "
    "--set data.sources.0.path=DIR (repeatable; VALUE is YAML; a number indexes a list).",
)
@click.option(
    "--out",
    type=NON_EMPTY_PATH,
    default=Path("runs"),
    show_default=True,
    help="Runs folder; the run lives in OUT/<recipe name> (checkpoints, log.jsonl, grids, "
    "generator.safetensors).",
)
@click.option(
    "--resume",
    is_flag=True,
    help="Continue the run in OUT/<name> from its latest checkpoint (same recipe; budget, "
    "device, threads, workers and validation may change).",
)
@click.option(
    "--overwrite", is_flag=True, help="Start over in a run folder that already holds a run."
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Data-parallel workers through Ray Train (one per GPU, or CPU processes); "
    "optim.batch_size is split evenly over them. Needs: pip install 'ray[train]'.",
)
def train_command(
    config: Path,
    overrides: tuple[str, ...],
    out: Path,
    resume: bool,
    overwrite: bool,
    workers: int,
) -> None:
    """Train a generator from the recipe CONFIG (e.g. configs/train-default.yaml).

    Data paths in CONFIG are relative to CONFIG's folder; paths given with --set are relative
    to the current directory. Progress (loss, steps/s, ETA) goes to stderr; the path of the
    trained weights is printed on stdout at the end. A run stopped by its budget, Ctrl-C or a
    kill continues with --resume to the same weights as an uninterrupted run.
    """
    from vidcolor.train.recipe import load_recipe

    if resume and overwrite:
        raise click.UsageError("--resume and --overwrite exclude each other")
    recipe = load_recipe(config, overrides)
    run = out / recipe.name
    with _run_lock(run):
        if workers > 1:
            from vidcolor.train.distributed import train_with_ray

            result = train_with_ray(recipe, run, workers, resume=resume, overwrite=overwrite)
        else:
            from vidcolor.train.fit import train

            result = train(recipe, run, resume=resume, overwrite=overwrite)
    click.echo(str(result.weights))


def _run_lock(run: Path) -> contextlib.AbstractContextManager[None]:
    """One sitting per run folder: two would interleave steps in one log and prune each
    other's checkpoints, and --overwrite would delete a live run's files."""
    from vidcolor.locks import exclusive

    if run.parent.exists() and not run.parent.is_dir():
        raise VidcolorError(f"--out {run.parent} is not a folder")
    try:
        run.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise VidcolorError(f"cannot create {run.parent}: {exc.strerror or exc}") from exc
    return exclusive(
        run.parent / f".{run.name}.lock",
        f"{run}: another vidcolor train (process {{pid}}) is running in this run folder; wait "
        "for it to stop",
    )


@click.command(
    "eval", context_settings=_CONTEXT, short_help="Score a model on colour photos vs. grey."
)
@click.argument("model", type=NON_EMPTY_PATH)
@click.argument("data", nargs=-1, required=True, type=NON_EMPTY_PATH)
@click.option(
    "--render-size",
    "--size",
    "render_size",
    default=DEFAULT_RENDER_SIZE,
    show_default=True,
    type=click.IntRange(32, 2048),
    help="Short side (px) at which colour is predicted, as for vidcolor --render-size.",
)
@click.option(
    "--limit", type=click.IntRange(min=1), default=None, help="At most N photos of each DATA."
)
@click.option(
    "--held-out",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=None,
    callback=lambda _ctx, _param, value: _finite(value, "--held-out"),
    help="Only the photos a training source with this data.sources hold_out never trained on.",
)
@engine_options
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=None,
    help="CPU threads for the engine (default: the CPUs this process may use).",
)
@MAX_PIXELS_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
def eval_command(
    model: Path,
    data: tuple[Path, ...],
    render_size: int,
    limit: int | None,
    held_out: float | None,
    device: str,
    backend: str,
    precision: str,
    threads: int | None,
    max_pixels: int,
    as_json: bool,
) -> None:
    """Score MODEL (.safetensors) on each DATA beside the grey baseline.

    DATA is a folder of colour photos, a folder of .tar shards (WebDataset), or one such file.
    Each photo is colourised from its own luminance exactly as `vidcolor photo.jpg` would, and
    compared with the original: PSNR, SSIM, colourfulness, ΔCF (prediction minus ground truth)
    and CIEDE2000, for the model and for the photo with its colour removed.
    """
    import torch
    from tqdm import tqdm

    from vidcolor.engines import load_engine
    from vidcolor.train.data import EvalSource
    from vidcolor.train.evaluate import evaluate_images, format_table

    if threads is not None:
        torch.set_num_threads(threads)
    sources = [EvalSource(path, held_out) for path in data]  # all checked before the model loads
    engine = load_engine(
        model, device, backend, precision, render_size=render_size, threads=threads
    )
    results: list[dict[str, object]] = []
    for source in sources:
        started = time.perf_counter()
        with tqdm(
            total=source.known_count(limit),
            desc=one_line(source.path.name),
            unit="photo",
            file=sys.stderr,
            leave=False,
            disable=None,  # only on a terminal
        ) as bar:
            evaluation = evaluate_images(
                engine,
                source.images(limit, max_pixels),
                render_size,
                with_grey=True,
                on_image=lambda: bar.update(1),
            )
        seconds = time.perf_counter() - started
        if not as_json:
            title = (
                f"{model.name} on {source.path}: {evaluation.images} photos, render size "
                f"{render_size}, {engine.name} on {engine.device}, {seconds:.0f} s"
            )
            click.echo(format_table(evaluation, [one_line(title)]) + "\n")
        results.append(
            {"data": str(source.path), "seconds": round(seconds, 1), **evaluation.to_json()}
        )
    if as_json:
        report = {
            "model": str(model),
            "engine": engine.name,
            "device": engine.device,
            "render_size": render_size,
            "threads": getattr(engine, "threads", torch.get_num_threads()),
            "results": results,
        }
        click.echo(json.dumps(report, indent=2))


def run_standalone(
    command: click.Command, prog_name: str, args: Sequence[str] | None = None
) -> NoReturn:
    """Run one command outside the group (``python -m vidcolor.train.fit``), errors as one line.

    Signals end it as they end ``vidcolor``: one line, status 128 + N (training checkpoints
    the step it was in first).
    """
    from vidcolor.signals import Interrupted, install_interrupt_handlers

    install_interrupt_handlers()
    try:
        command.main(args=list(args) if args is not None else None, prog_name=prog_name)
    except VidcolorError as exc:
        click.echo(f"vidcolor: error: {one_line(str(exc))}", err=True)
        sys.exit(1)
    except Interrupted as exc:
        kept = (
            "checkpoints written so far are kept (--resume goes on from the last)"
            if command is train_command
            else "nothing was kept"
        )
        click.echo(f"vidcolor: error: interrupted by {exc.name}; {kept}", err=True)
        sys.exit(exc.exit_status)
    sys.exit(0)  # not reached: click's standalone main always exits


__all__ = ["eval_command", "run_standalone", "train_command"]
