"""``vidcolor deflicker``: steady the colour of a film that another tool colourised.

The same filter as the smooth stage, on the film's own a,b: each frame's a,b is brought to the
working size (the render size), smoothed along the motion, and the *change* the filter made is
scaled back up and added to the full-resolution a,b. The film's luminance is kept as it is, and
so is any chroma detail finer than the working size that the filter had no reason to touch.
Decoding, timestamps, copied audio and subtitles, the temporary output and its final rename are
the main command's own (``VideoReader``, ``VideoWriter``, ``StageThreads``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vidcolor.api import Result
from vidcolor.atomic import atomic_output, check_output_path
from vidcolor.color import resize_plane
from vidcolor.errors import VidcolorError
from vidcolor.media.decode import CopiedPackets, DecodedFrame, VideoReader
from vidcolor.media.encode import VideoWriter, codec_profile
from vidcolor.media.probe import MediaKind, detect_kind
from vidcolor.options import RunOptions
from vidcolor.pipeline import (
    ColorizedFrame,
    StageThreads,
    encode_stage,
    join_stage,
    render_shape,
)
from vidcolor.temporal import temporal_settings
from vidcolor.temporal.stage import smooth_stage


@dataclass
class SourceColorFrame(ColorizedFrame):
    """A frame of a colour film on its way through the filter."""

    source_ab: np.ndarray | None = None  # (H, W, 2) the film's own a,b at full size
    source_small: np.ndarray | None = None  # (h, w, 2) the same at the working size


def prepare_stage(
    items: Iterable[DecodedFrame | CopiedPackets], work_size: int
) -> Iterator[SourceColorFrame | CopiedPackets]:
    """L and a,b of each decoded colour frame at the working size (short side ``work_size``)."""
    shape: tuple[int, int] | None = None
    for item in items:
        if not isinstance(item, DecodedFrame):
            yield item
            continue
        if item.ab is None:
            raise ValueError("deflicker needs a reader that keeps chroma (chroma=True)")
        if shape is None:
            height, width = item.luminance.shape
            shape = render_shape(width, height, work_size)
        small_ab = resize_plane(item.ab, *shape)
        yield SourceColorFrame(
            item.index,
            item.pts,
            item.luminance,
            small_ab,
            resize_plane(item.luminance, *shape),
            source_ab=item.ab,
            source_small=small_ab,
        )


def restore_stage(
    items: Iterable[SourceColorFrame | CopiedPackets],
) -> Iterator[ColorizedFrame | CopiedPackets]:
    """Full-size a,b: the film's own plus the filter's change, scaled up."""
    for item in items:
        if not isinstance(item, SourceColorFrame):
            yield item
            continue
        assert item.source_ab is not None and item.source_small is not None
        height, width = item.luminance.shape
        change = resize_plane(item.ab - item.source_small, width, height)
        yield ColorizedFrame(item.index, item.pts, item.luminance, item.source_ab + change)


def deflicker_film(
    reader: VideoReader,
    writer: VideoWriter,
    options: RunOptions,
    on_frame: Callable[[], None] | None = None,
) -> int:
    """Steady the colour of ``reader``'s film (opened with ``chroma=True``) into ``writer``.

    Wired like ``run_film``: decode and smoothing run in stage threads that are stopped and
    joined however the film ends; the writer is finished on success and aborted otherwise.
    """
    depth = np.uint16 if writer.high_bit_depth else np.uint8
    settings = temporal_settings(options)
    try:
        with StageThreads(options.queue_depth) as threads:
            decoded = threads.start(reader.frames(), "decode")
            prepared = prepare_stage(decoded, options.render_size)
            smoothed = threads.start(smooth_stage(prepared, settings), "smooth")
            rendered = join_stage(restore_stage(smoothed), depth)
            encode_stage(rendered, writer, on_frame)
        writer.close()
    except BaseException:
        writer.abort()
        raise
    return writer.frames_written


def deflicker_video(
    source: str | os.PathLike,
    output: str | os.PathLike,
    options: RunOptions | None = None,
    *,
    on_start: Callable[[int], None] | None = None,
    on_frame: Callable[[], None] | None = None,
) -> Result:
    """Steady the colour of a colourised film: same frames, timestamps, luminance and streams.

    ``options.render_size`` is the working size of the filter, ``options.temporal_strength``
    its strength; codec, overwrite and the decoder's limits apply as for ``colorize_video``.
    """
    source, output = Path(source), Path(output)
    options = options or RunOptions()
    started = time.perf_counter()
    if detect_kind(source) is not MediaKind.VIDEO:
        raise VidcolorError(f"{source}: is an image; deflicker takes a film")
    check_output_path(source, output, options.overwrite)
    codec_profile(options.encode)
    reader = VideoReader(
        source,
        max_pixels=options.max_pixels,
        allow_truncated=options.allow_truncated,
        chroma=True,
    )
    with reader, atomic_output(output, overwrite=options.overwrite) as tmp:
        if on_start is not None:
            on_start(reader.info.frame_count)
        writer = VideoWriter(tmp, reader.info, options.encode, reader.copied_streams, label=output)
        frames = deflicker_film(reader, writer, options, on_frame)
        copied = [f"{s.type} #{i}" for i, s in writer.copied.items()]
    return Result(source, output, MediaKind.VIDEO, frames, time.perf_counter() - started, copied)
