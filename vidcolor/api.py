"""The Python API: colourise an image, a film, or a folder of them.

    from vidcolor import colorize_video, colorize_image
    colorize_video("film.mp4", "color.mp4")
    colorize_image("scan.tif", "scan-color.tif", render_size=384)

Every output is written under a temporary name and renamed when complete.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vidcolor.atomic import atomic_output, check_writable_target
from vidcolor.color import as_float_rgb, join_lab, luminance, to_uint
from vidcolor.engines import Engine, load_engine
from vidcolor.errors import VidcolorError
from vidcolor.media.decode import VideoReader
from vidcolor.media.encode import VideoWriter, codec_profile
from vidcolor.media.images import read_image, write_image
from vidcolor.media.probe import IMAGE_SUFFIXES, VIDEO_SUFFIXES, MediaKind, detect_kind
from vidcolor.options import EncodeSettings
from vidcolor.pipeline import (
    colorize_stage,
    encode_stage,
    join_stage,
    predict_ab,
    prefetch,
    render_shape,
)

DEFAULT_RENDER_SIZE = 160
DEFAULT_BATCH = 8
QUEUE_DEPTH = 16


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


def _engine(engine: Engine | None, device: str) -> Engine:
    return engine if engine is not None else load_engine(device=device)


def _check_paths(source: Path, output: Path, overwrite: bool) -> None:
    check_writable_target(output, overwrite)
    if output.exists() and source.exists() and os.path.samefile(source, output):
        raise VidcolorError(f"{output}: output would overwrite the input")


def colorize_array(
    image: np.ndarray,
    engine: Engine,
    render_size: int = DEFAULT_RENDER_SIZE,
) -> np.ndarray:
    """Colourise an in-memory image (any depth, grey or colour); returns float RGB in 0..1."""
    lum = luminance(as_float_rgb(image))
    height, width = lum.shape
    ab = predict_ab(engine, [lum], render_shape(width, height, render_size))[0]
    return join_lab(lum, ab)


def colorize_image(
    source: str | os.PathLike,
    output: str | os.PathLike,
    *,
    engine: Engine | None = None,
    device: str = "auto",
    render_size: int = DEFAULT_RENDER_SIZE,
    overwrite: bool = False,
) -> Result:
    """Colourise one still; 16-bit stays 16-bit where the output format allows, alpha is kept."""
    source = Path(source)
    if detect_kind(source) is not MediaKind.IMAGE:
        raise VidcolorError(f"{source}: is a video; use colorize_video")
    return _image_job(source, Path(output), _engine(engine, device), render_size, overwrite)


def colorize_video(
    source: str | os.PathLike,
    output: str | os.PathLike,
    *,
    engine: Engine | None = None,
    device: str = "auto",
    render_size: int = DEFAULT_RENDER_SIZE,
    codec: str = "h264",
    crf: int | None = None,
    preset: str = "medium",
    batch_size: int = DEFAULT_BATCH,
    overwrite: bool = False,
    on_start: Callable[[int], None] | None = None,
    on_frame: Callable[[], None] | None = None,
) -> Result:
    """Colourise a film: every frame and timestamp kept, audio and subtitles copied as they are.

    ``on_start(total_frames)`` and ``on_frame()`` let a caller drive a progress display.
    """
    source = Path(source)
    if detect_kind(source) is not MediaKind.VIDEO:
        raise VidcolorError(f"{source}: is an image; use colorize_image")
    settings = EncodeSettings(codec=codec, crf=crf, preset=preset)
    return _video_job(
        source,
        Path(output),
        engine,
        device,
        render_size,
        settings,
        batch_size,
        overwrite,
        on_start,
        on_frame,
    )


def colorize(
    source: str | os.PathLike,
    output: str | os.PathLike,
    *,
    engine: Engine | None = None,
    device: str = "auto",
    render_size: int = DEFAULT_RENDER_SIZE,
    codec: str = "h264",
    crf: int | None = None,
    preset: str = "medium",
    batch_size: int = DEFAULT_BATCH,
    overwrite: bool = False,
    on_start: Callable[[int], None] | None = None,
    on_frame: Callable[[], None] | None = None,
) -> Result:
    """Colourise one file, whichever kind its content says it is (video options apply to films)."""
    source = Path(source)
    if detect_kind(source) is MediaKind.IMAGE:
        return _image_job(source, Path(output), _engine(engine, device), render_size, overwrite)
    settings = EncodeSettings(codec=codec, crf=crf, preset=preset)
    return _video_job(
        source,
        Path(output),
        engine,
        device,
        render_size,
        settings,
        batch_size,
        overwrite,
        on_start,
        on_frame,
    )


def _image_job(
    source: Path, output: Path, engine: Engine, render_size: int, overwrite: bool
) -> Result:
    started = time.perf_counter()
    _check_paths(source, output, overwrite)
    loaded = read_image(source)
    rgb = colorize_array(loaded.rgb, engine, render_size)
    depth = np.uint16 if loaded.rgb.dtype != np.uint8 else np.uint8
    write_image(output, to_uint(rgb, depth), loaded.alpha)
    return Result(source, output, MediaKind.IMAGE, 1, time.perf_counter() - started)


def _video_job(
    source: Path,
    output: Path,
    engine: Engine | None,
    device: str,
    render_size: int,
    settings: EncodeSettings,
    batch_size: int,
    overwrite: bool,
    on_start: Callable[[int], None] | None,
    on_frame: Callable[[], None] | None,
) -> Result:
    """The film pipeline: decode -> colourise -> join -> encode, into a temporary file."""
    started = time.perf_counter()
    _check_paths(source, output, overwrite)
    codec_profile(settings)
    engine = _engine(engine, device)
    with VideoReader(source) as reader, atomic_output(output) as tmp:
        writer = VideoWriter(tmp, reader.info, settings, reader.copied_streams, label=output)
        try:
            if on_start is not None:
                on_start(reader.info.frame_count)
            depth = np.uint16 if writer.high_bit_depth else np.uint8
            decoded = prefetch(reader.frames(), QUEUE_DEPTH)
            colorized = prefetch(
                colorize_stage(decoded, engine, render_size, batch_size), QUEUE_DEPTH
            )
            rendered = join_stage(colorized, depth)
            encode_stage(rendered, writer, on_frame)
        except BaseException:
            writer.abort()
            raise
        frames = writer.frames_written
        copied = [f"{s.type} #{i}" for i, s in writer.copied.items()]
    return Result(source, output, MediaKind.VIDEO, frames, time.perf_counter() - started, copied)


def plan_folder(source: Path, output: Path) -> Iterator[tuple[Path, Path]]:
    """Pairs (input, output) that mirror a folder tree; only media-looking files are taken."""
    known = IMAGE_SUFFIXES | VIDEO_SUFFIXES
    for path in sorted(source.rglob("*")):
        if path.is_file() and path.suffix.lower() in known and not path.name.startswith("."):
            yield path, output / path.relative_to(source)
