"""Long films in chunks: split at keyframes, colourise each apart, join by copying packets.

A chunk is a small row (first and end frame, and the frames it reads around them for the
temporal filter's warm-up and look-ahead), so a film's chunks travel to every worker of a
cluster as a few integers plus the film's index, built once. Each worker colourises its chunk
into a film of its own; ``vidcolor.media.join`` then copies their packets into the output.
Chunked output equals one-pass output: same frames, pts and sound; colour within a fraction
of a level at the seams (the filter's state there is rebuilt from the warm-up frames).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from vidcolor.atomic import atomic_output
from vidcolor.engines.base import Engine
from vidcolor.errors import VidcolorError
from vidcolor.media.decode import VideoReader
from vidcolor.media.encode import VideoWriter
from vidcolor.media.index import FilmIndex
from vidcolor.options import RunOptions
from vidcolor.pipeline import run_film

# A film shorter than this many chunks' length is colourised in one pass: below it the
# warm-up frames and the join cost more than the parallelism gains.
MIN_CHUNKS = 1.5


def chunk_suffix(codec: str) -> str:
    """The container of chunk files: MOV (or MP4) keeps each packet's pts and dts exactly in
    the source's time base, which the join needs (Matroska keeps milliseconds, and no dts)."""
    from vidcolor.media.encode import container_holds

    return ".mov" if container_holds(".mov", codec) else ".mp4"


@dataclass(frozen=True)
class Chunk:
    """Frames ``first..end-1`` of a film; ``read_first..read_end-1`` are decoded for them."""

    first: int
    end: int
    read_first: int
    read_end: int

    @property
    def name(self) -> str:
        return f"{self.first:09d}-{self.end:09d}"

    @property
    def frames(self) -> int:
        return self.end - self.first


def plan_chunks(index: FilmIndex, chunk_seconds: float, options: RunOptions) -> list[Chunk]:
    """Chunks of about ``chunk_seconds``, each starting at the keyframe nearest its share.

    One chunk (the whole film) when the film is short or its timing needs the one-pass decode.
    """
    count = index.frame_count
    length = index.seconds(count)
    if not index.splittable or chunk_seconds <= 0 or length < MIN_CHUNKS * chunk_seconds:
        return [_chunk(0, count, count, options)]
    pieces = max(1, round(length / chunk_seconds))
    per_chunk = count / pieces
    bounds = [0]
    for k in range(1, pieces):  # each cut near its share of the film, so no drift piles up
        wanted = round(k * per_chunk)
        cut = _nearest_keyframe(index, wanted, int(per_chunk // 2))
        if bounds[-1] < cut < count:
            bounds.append(cut)
    bounds.append(count)
    return [_chunk(a, b, count, options) for a, b in zip(bounds, bounds[1:], strict=False)]


def _nearest_keyframe(index: FilmIndex, frame: int, reach: int) -> int:
    """The keyframe nearest ``frame`` within ``reach`` frames (a chunk that starts there
    decodes nothing before its warm-up), else ``frame`` itself."""
    near = [k for k in index.keyframes_between(frame - reach, frame + reach)]
    return min(near, key=lambda k: abs(k - frame)) if near else frame


def _chunk(first: int, end: int, count: int, options: RunOptions) -> Chunk:
    if not options.temporal:
        return Chunk(first, end, first, end)
    from vidcolor.temporal import chunk_reads, temporal_settings

    read_first, read_end = chunk_reads(
        first, end, options.temporal_warmup, temporal_settings(options)
    )
    return Chunk(first, end, read_first, min(read_end, count))


def colorize_chunk(
    source: Path,
    index: FilmIndex,
    chunk: Chunk,
    output: Path,
    engine: Engine,
    options: RunOptions,
    on_frame: Callable[[], None] | None = None,
) -> int:
    """Colourise one chunk into a film of its own (video only); returns the frames written."""
    reader = VideoReader(
        source,
        chunk.read_first,
        end_frame=chunk.read_end,
        index=index,
        max_pixels=options.max_pixels,
        allow_truncated=options.allow_truncated,
        threads=options.threads,
    )
    with reader, atomic_output(output, overwrite=True) as tmp:
        # The chunk's last frame shows until the next chunk's first, not to the film's end.
        end_pts = index.pts_of(chunk.end)
        info = reader.info if end_pts is None else dataclasses.replace(reader.info, end_pts=end_pts)
        writer = VideoWriter(tmp, info, options.encode, [], label=output)
        frames = run_film(reader, writer, engine, options, on_frame, (chunk.first, chunk.end))
    if frames != chunk.frames:
        output.unlink(missing_ok=True)
        raise VidcolorError(f"{source}: frames {chunk.first}..{chunk.end - 1} gave {frames}")
    return frames
