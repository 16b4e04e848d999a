"""The smooth stage of the film pipeline: colourise -> **smooth** -> join.

It takes the colourise stage's items (frames with their render-size L and predicted a,b, and
copied packets in between) and gives them back in the same order with steadier a,b. It holds a
few frames (the filter's look-ahead), so memory stays flat.

Chunks: a film cut into chunks colourised in parallel joins without a seam when each chunk's
stage starts a few frames early and reads a few frames past its end. Frames outside
``[first_frame, end_frame)`` are smoothed for the filter's state and look-ahead, never given out.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Iterable, Iterator
from typing import TypeVar

import numpy as np

from vidcolor.color import resize_plane
from vidcolor.media.decode import CopiedPackets
from vidcolor.pipeline import ColorizedFrame
from vidcolor.temporal.smooth import TemporalFilter, TemporalSettings

F = TypeVar("F", bound=ColorizedFrame)


def render_luminance(frame: ColorizedFrame) -> np.ndarray:
    """The frame's L at the size of its a,b (the colourise stage carries it; else resized)."""
    if frame.render_luminance is not None:
        return frame.render_luminance
    height, width = frame.ab.shape[:2]
    return resize_plane(frame.luminance, width, height)


class _Entry:
    __slots__ = ("item", "done")

    def __init__(self, item: object, done: bool):
        self.item = item
        self.done = done


def smooth_stage(
    items: Iterable[F | CopiedPackets],
    settings: TemporalSettings | None = None,
    first_frame: int = 0,
    end_frame: int | None = None,
) -> Iterator[F | CopiedPackets]:
    """Smooth each frame's a,b along the film's motion; packets keep their place."""
    filter_: TemporalFilter[_Entry] = TemporalFilter(settings)
    queue: deque[_Entry] = deque()

    def collect() -> None:
        for entry, ab, _cut in filter_.ready():
            entry.item = dataclasses.replace(entry.item, ab=ab)  # type: ignore[type-var]
            entry.done = True

    def drain() -> Iterator[F | CopiedPackets]:
        while queue and queue[0].done:
            item = queue.popleft().item
            if isinstance(item, ColorizedFrame) and not (
                item.index >= first_frame and (end_frame is None or item.index < end_frame)
            ):
                continue  # warm-up or look-ahead of a chunk: state only
            yield item  # type: ignore[misc]

    for item in items:
        if isinstance(item, ColorizedFrame):
            entry = _Entry(item, False)
            queue.append(entry)
            filter_.push(item.index, render_luminance(item), item.ab, entry)
            collect()
        else:
            queue.append(_Entry(item, True))
        yield from drain()
    filter_.finish()
    collect()
    yield from drain()


def chunk_reads(
    first_frame: int, end_frame: int, warmup: int, settings: TemporalSettings | None = None
) -> tuple[int, int]:
    """The frames a chunk ``[first_frame, end_frame)`` must read: ``warmup`` before it for the
    filter's state, and the filter's delay past it for its look-ahead and cut checks."""
    delay = (settings or TemporalSettings()).delay
    return max(0, first_frame - warmup), end_frame + delay
