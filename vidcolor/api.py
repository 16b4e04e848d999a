"""The Python API: colourise an image, a film, or a folder of them.

    from vidcolor import RunOptions, colorize_video, colorize_image
    colorize_video("film.mp4", "color.mp4")
    colorize_image("scan.tif", "scan-color.tif", RunOptions(render_size=384))

Every output is written under a temporary name and renamed when complete. How to colourise
(render size, batch, codec, limits) travels in one ``RunOptions``; the film itself is wired
by ``vidcolor.pipeline.run_film``, the one function every front end calls.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vidcolor.atomic import atomic_output, check_output_path
from vidcolor.color import as_float_rgb, join_lab, luminance, to_uint
from vidcolor.engines import Engine, load_engine
from vidcolor.errors import VidcolorError
from vidcolor.media.decode import VideoReader
from vidcolor.media.encode import VideoWriter, codec_profile
from vidcolor.media.images import read_image, write_image
from vidcolor.media.probe import MediaKind, detect_kind
from vidcolor.options import DEFAULT_RENDER_SIZE, RunOptions
from vidcolor.pipeline import predict_ab, render_shape, run_film


@dataclass
class Result:
    """What one colourised file reports back (one line of the CLI summary)."""

    source: Path
    output: Path
    kind: MediaKind
    frames: int
    seconds: float
    copied_streams: list[str] = field(default_factory=list)

    def summary(self) -> str:
        if self.kind is MediaKind.IMAGE:
            return f"{self.source} -> {self.output} ({self.seconds:.1f} s)"
        fps = self.frames / self.seconds if self.seconds > 0 else 0.0
        copied = f", copied {', '.join(self.copied_streams)}" if self.copied_streams else ""
        return (
            f"{self.source} -> {self.output}: {self.frames} frames in {self.seconds:.1f} s "
            f"({fps:.1f} fps){copied}"
        )


def colorize_array(
    image: np.ndarray,
    engine: Engine,
    render_size: int = DEFAULT_RENDER_SIZE,
) -> np.ndarray:
    """Colourise an in-memory image (any depth, grey or colour); returns float RGB in 0..1.

    The one still-image path: the CLI, the API and model evaluation all colourise through it.
    """
    lum = luminance(as_float_rgb(image))
    height, width = lum.shape
    ab = predict_ab(engine, [lum], render_shape(width, height, render_size))[0]
    return join_lab(lum, ab)


def colorize_image(
    source: str | os.PathLike,
    output: str | os.PathLike,
    options: RunOptions | None = None,
    *,
    engine: Engine | None = None,
    device: str = "auto",
) -> Result:
    """Colourise one still; 16-bit stays 16-bit where the output format allows, alpha is kept."""
    source = Path(source)
    if detect_kind(source) is not MediaKind.IMAGE:
        raise VidcolorError(f"{source}: is a video; use colorize_video")
    options = options or RunOptions()
    return _image_job(source, Path(output), _engine(engine, device), options)


def colorize_video(
    source: str | os.PathLike,
    output: str | os.PathLike,
    options: RunOptions | None = None,
    *,
    engine: Engine | None = None,
    device: str = "auto",
    on_start: Callable[[int], None] | None = None,
    on_frame: Callable[[], None] | None = None,
) -> Result:
    """Colourise a film: every frame and timestamp kept, audio and subtitles copied as they are.

    ``on_start(total_frames)`` and ``on_frame()`` let a caller drive a progress display.
    """
    source = Path(source)
    if detect_kind(source) is not MediaKind.VIDEO:
        raise VidcolorError(f"{source}: is an image; use colorize_image")
    options = options or RunOptions()
    return _video_job(source, Path(output), engine, device, options, on_start, on_frame)


def colorize(
    source: str | os.PathLike,
    output: str | os.PathLike,
    options: RunOptions | None = None,
    *,
    engine: Engine | None = None,
    device: str = "auto",
    on_start: Callable[[int], None] | None = None,
    on_frame: Callable[[], None] | None = None,
) -> Result:
    """Colourise one file, whichever kind its content says it is (video options apply to films)."""
    source = Path(source)
    options = options or RunOptions()
    if detect_kind(source) is MediaKind.IMAGE:
        return _image_job(source, Path(output), _engine(engine, device), options)
    return _video_job(source, Path(output), engine, device, options, on_start, on_frame)


def _engine(engine: Engine | None, device: str) -> Engine:
    return engine if engine is not None else load_engine(device=device)


def _image_job(source: Path, output: Path, engine: Engine, options: RunOptions) -> Result:
    started = time.perf_counter()
    check_output_path(source, output, options.overwrite)
    loaded = read_image(source, max_pixels=options.max_pixels)
    rgb = colorize_array(loaded.rgb, engine, options.render_size)
    depth = np.uint16 if loaded.rgb.dtype != np.uint8 else np.uint8
    write_image(output, to_uint(rgb, depth), loaded.alpha, overwrite=options.overwrite)
    return Result(source, output, MediaKind.IMAGE, 1, time.perf_counter() - started)


def _video_job(
    source: Path,
    output: Path,
    engine: Engine | None,
    device: str,
    options: RunOptions,
    on_start: Callable[[int], None] | None,
    on_frame: Callable[[], None] | None,
) -> Result:
    """Open the film and its temporary output, then hand both to ``run_film``."""
    started = time.perf_counter()
    check_output_path(source, output, options.overwrite)
    codec_profile(options.encode)  # a bad codec is refused before the model loads
    engine = _engine(engine, device)
    reader = VideoReader(
        source,
        max_pixels=options.max_pixels,
        allow_truncated=options.allow_truncated,
        threads=options.threads,
    )
    with reader, atomic_output(output, overwrite=options.overwrite) as tmp:
        if on_start is not None:
            on_start(reader.info.frame_count)
        writer = VideoWriter(tmp, reader.info, options.encode, reader.copied_streams, label=output)
        frames = run_film(reader, writer, engine, options, on_frame)
        copied = [f"{s.type} #{i}" for i, s in writer.copied.items()]
    return Result(source, output, MediaKind.VIDEO, frames, time.perf_counter() - started, copied)
