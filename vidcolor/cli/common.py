"""What several commands share: path arguments, a progress bar, the engine options, and the
output options of a film.

The colourise and deflicker commands both write films, and colourise and eval both run an
engine: one definition of each option set keeps their flags, defaults and help the same.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import click
from tqdm import tqdm

from vidcolor.errors import one_line
from vidcolor.media.encode import CODECS
from vidcolor.options import (
    DEFAULT_BATCH,
    DEFAULT_MAX_PIXELS,
    DEFAULT_RENDER_SIZE,
    DEFAULT_TEMPORAL_STRENGTH,
    MAX_TEMPORAL_STRENGTH,
    EncodeSettings,
    RunOptions,
)

F = TypeVar("F", bound=Callable[..., object])


class NonEmptyPath(click.ParamType):
    """A path; an empty string (which pathlib reads as ".", the current folder) is refused."""

    name = "path"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> Path:
        if isinstance(value, Path):
            return value
        text = os.fsdecode(value) if isinstance(value, bytes) else str(value)
        if text == "":
            self.fail("an empty name is not a file or folder", param, ctx)
        return Path(text)


NON_EMPTY_PATH = NonEmptyPath()

MAX_PIXELS_OPTION = click.option(
    "--max-pixels",
    default=DEFAULT_MAX_PIXELS,
    show_default=True,
    type=click.IntRange(1),
    help="Largest still or frame (width x height) to decode; bigger ones are refused.",
)


class Progress:
    """A tqdm bar on terminals (frames, fps, ETA); silent when piped or --quiet."""

    def __init__(self, label: str, quiet: bool):
        self.label = one_line(label)
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


def film_output_options(command: F) -> F:
    """--codec, --crf, --preset, --max-pixels, --allow-truncated, --overwrite and -q."""
    options = [
        click.option(
            "--codec",
            default="h264",
            show_default=True,
            type=click.Choice(list(CODECS)),
            help="Video codec: h264 plays in browsers; ffv1 or prores for archival masters.",
        ),
        click.option(
            "--crf",
            type=click.IntRange(0, 63),
            default=None,
            help="Quality for h264/h265 (0-51) and vp9/av1 (0-63); lower is better (h264: 18).",
        ),
        click.option(
            "--preset", default="medium", show_default=True, help="x264/x265 speed preset."
        ),
        MAX_PIXELS_OPTION,
        click.option(
            "--allow-truncated",
            is_flag=True,
            help="A film that ends before its header says is kept with a warning, not refused.",
        ),
        click.option("--overwrite", is_flag=True, help="Replace existing output files."),
        click.option("-q", "--quiet", is_flag=True, help="No progress bar and no summary."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def engine_options(command: F) -> F:
    """--device, --backend and --precision: which engine colourises (see vidcolor.engines)."""
    options = [
        click.option(
            "--device",
            default="auto",
            show_default=True,
            callback=_check_device,
            help="auto, cpu, cuda or cuda:N.",
        ),
        click.option(
            "--backend",
            default="auto",
            show_default=True,
            type=click.Choice(["auto", "onnxruntime", "torch", "tensorrt"]),
            help="Inference engine. auto: TensorRT, else PyTorch on a CUDA GPU, else the "
            "fastest CPU engine (ONNX Runtime int8).",
        ),
        click.option(
            "--precision",
            default="auto",
            show_default=True,
            type=click.Choice(["auto", "fp32", "fp16", "bf16", "int8"]),
            help="Number format of the engine (auto: the backend's fastest that keeps quality).",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def finite(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    """click's FloatRange lets NaN through (every comparison with it is false)."""
    if value is not None and not math.isfinite(value):
        raise click.BadParameter(f"{value!r} is not a number")
    return value


def _check_device(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """A misspelt device is a command-line mistake (exit 2), like a misspelt backend."""
    from vidcolor.engines import is_device_name

    if is_device_name(value):
        return value
    raise click.BadParameter(f"{value!r}: use auto, cpu, cuda or cuda:N")


def colour_options(command: F) -> F:
    """--render-size, --batch-size, --model, --no-temporal and --temporal-strength."""
    options = [
        click.option(
            "--render-size",
            default=DEFAULT_RENDER_SIZE,
            show_default=True,
            type=click.IntRange(64, 2048),
            help="Short side (px) at which colour is predicted; luminance stays full size.",
        ),
        click.option(
            "--batch-size",
            default=DEFAULT_BATCH,
            show_default=True,
            type=click.IntRange(1, 256),
            help="Frames per inference batch.",
        ),
        click.option(
            "--model",
            "weights",
            type=NON_EMPTY_PATH,
            default=None,
            help="Generator weights (.safetensors); default: the shipped model.",
        ),
        click.option(
            "--no-temporal",
            "no_temporal",
            is_flag=True,
            help="Colourise every frame on its own (no smoothing of colour along the motion).",
        ),
        click.option(
            "--temporal-strength",
            default=DEFAULT_TEMPORAL_STRENGTH,
            show_default=True,
            type=click.FloatRange(0, MAX_TEMPORAL_STRENGTH),
            callback=finite,
            help="How strongly colour is steadied along the motion "
            "(0: not at all; 2: twice the weight).",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def run_options(
    render_size: int,
    batch_size: int,
    codec: str,
    crf: int | None,
    preset: str,
    overwrite: bool,
    max_pixels: int,
    allow_truncated: bool,
    no_temporal: bool,
    temporal_strength: float,
) -> RunOptions:
    """The run's options from the command line's (the same for colorize and batch)."""
    return RunOptions(
        render_size=render_size,
        batch_size=batch_size,
        encode=EncodeSettings(codec=codec, crf=crf, preset=preset),
        overwrite=overwrite,
        max_pixels=max_pixels,
        allow_truncated=allow_truncated,
        temporal=not no_temporal,
        temporal_strength=temporal_strength,
    )
