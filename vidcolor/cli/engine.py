"""``vidcolor engine export|build|list|clear|calibration``: the engine cache by hand.

Colourising exports and builds what it needs on first use; these commands do it ahead of time
(in a container image's build step, say), show what the cache holds, and empty it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import click

from vidcolor.cli.common import NON_EMPTY_PATH
from vidcolor.errors import VidcolorError, one_line
from vidcolor.options import DEFAULT_BATCH, DEFAULT_RENDER_SIZE

_CONTEXT = {"help_option_names": ["-h", "--help"]}
_MODEL = click.argument("model", required=False, type=NON_EMPTY_PATH)


@click.group("engine", context_settings=_CONTEXT, short_help="Export, build and cache engines.")
def engine_command() -> None:
    """Export the generator to ONNX, build TensorRT engines, and manage their cache.

    MODEL is a .safetensors generator (default: the shipped model). The cache lives in
    $VIDCOLOR_CACHE_DIR, else $XDG_CACHE_HOME/vidcolor, else ~/.cache/vidcolor.
    """


@engine_command.command("export", context_settings=_CONTEXT)
@_MODEL
@click.option(
    "--precision",
    default="fp32",
    show_default=True,
    type=click.Choice(["fp32", "fp16", "int8"]),
    help="fp32 for ONNX Runtime, fp16 for TensorRT, int8 for ONNX Runtime on CPUs.",
)
@click.option(
    "--calibration",
    type=NON_EMPTY_PATH,
    default=None,
    help="int8: photos to calibrate on (folder, .tar shards); default: the shipped set.",
)
@click.option("-o", "--output", type=NON_EMPTY_PATH, default=None, help="Also copy it here.")
@click.option("--overwrite", is_flag=True, help="Replace an existing --output file.")
def export_command(
    model: Path | None,
    precision: str,
    calibration: Path | None,
    output: Path | None,
    overwrite: bool,
) -> None:
    """Export MODEL to ONNX (dynamic batch, height and width), checked, into the cache."""
    from vidcolor.atomic import atomic_output, check_output_path
    from vidcolor.engines import check_weights
    from vidcolor.engines.export import cached_export

    weights = check_weights(model)
    if output is not None:
        check_output_path(weights, output, overwrite)  # never onto the model itself
    options = {"calibration": calibration} if precision == "int8" else {}
    if calibration is not None and precision != "int8":
        raise VidcolorError("--calibration is for --precision int8 only")
    path = cached_export(weights, precision, **options)
    if output is not None:
        with atomic_output(output, overwrite) as tmp:
            try:
                shutil.copyfile(path, tmp)
            except OSError as exc:
                raise VidcolorError(
                    f"{one_line(str(output))}: cannot write ({(exc.strerror or str(exc)).lower()})"
                ) from None
        path = output
    click.echo(one_line(str(path)))


@engine_command.command("build", context_settings=_CONTEXT)
@_MODEL
@click.option("--device", default="cuda", show_default=True, help="cuda or cuda:N.")
@click.option("--batch-size", default=DEFAULT_BATCH, show_default=True, type=click.IntRange(1, 256))
@click.option(
    "--render-size", default=DEFAULT_RENDER_SIZE, show_default=True, type=click.IntRange(64, 2048)
)
def build_command(model: Path | None, device: str, batch_size: int, render_size: int) -> None:
    """Build (or find cached) the TensorRT engine for MODEL on this GPU.

    One optimisation profile covers batches up to --batch-size and every render shape of
    --render-size, as `vidcolor --backend tensorrt` with the same options uses.
    """
    from vidcolor.engines import check_weights
    from vidcolor.engines.tensorrt_engine import Profile, TensorRTEngine

    if not device.startswith("cuda"):
        raise click.BadParameter(
            f"{device!r}: TensorRT runs on cuda or cuda:N", param_hint="--device"
        )
    engine = TensorRTEngine(check_weights(model), device, batch_size, render_size)
    click.echo(one_line(str(engine.engine_file(Profile.for_run(batch_size, render_size)).path)))


@engine_command.command("list", context_settings=_CONTEXT)
def list_command() -> None:
    """Show the exports and engines in the cache."""
    from vidcolor.engines.cache import cache_dir, list_entries

    entries = list_entries()
    click.echo(f"cache: {one_line(str(cache_dir()))}")
    if not entries:
        click.echo("(empty)")
        return
    for item in entries:
        info = item.info
        what = info.get("kind", "?")
        if "calibration" in info:
            what += f" (calibration {str(info['calibration'])[:8]})"
        if what == "tensorrt":
            what += f" {info.get('gpu', '?')} (sm {info.get('compute_capability', '?')})"
        size_mb = item.path.stat().st_size / 1e6
        click.echo(
            f"{info.get('precision', '?'):5s} {size_mb:7.1f} MB  {what:28s} "
            f"{one_line(str(info.get('model_name', '?')))}  {one_line(item.path.name)}"
        )


@engine_command.command("clear", context_settings=_CONTEXT)
def clear_command() -> None:
    """Delete every cached export and engine (they are rebuilt when next needed)."""
    from vidcolor.engines.cache import cache_dir, clear_entries

    files, size = clear_entries()  # only what vidcolor wrote there
    click.echo(f"removed {files} files ({size / 1e6:.1f} MB) from {one_line(str(cache_dir()))}")


@engine_command.command("calibration", context_settings=_CONTEXT)
@click.argument("data", nargs=-1, required=True, type=NON_EMPTY_PATH)
@click.option("-o", "--output", required=True, type=NON_EMPTY_PATH, help="The .tar to write.")
@click.option("--photos", default=256, show_default=True, type=click.IntRange(1, 100_000))
@click.option("--seed", default=0, show_default=True, type=click.IntRange(0))
@click.option("--overwrite", is_flag=True, help="Replace an existing output file.")
def calibration_command(
    data: tuple[Path, ...], output: Path, photos: int, seed: int, overwrite: bool
) -> None:
    """Draw int8 calibration photos evenly from DATA into one .tar of grey JPEGs.

    This is how engines/calibration.tar was made from shared/data/train and people-places.
    """
    from vidcolor.atomic import check_writable_target
    from vidcolor.engines.quantize import make_calibration_set
    from vidcolor.train.data import EvalSource

    check_writable_target(output, overwrite)
    for path in data:
        EvalSource(path)  # each must exist and hold photos, before any is read
    count = make_calibration_set(list(data), output, photos, seed, overwrite)
    click.echo(one_line(f"{output}: {count} photos"))
