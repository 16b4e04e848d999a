"""The stages of a film's journey: decode -> colourise -> (smooth) -> join -> encode.

Each stage is a generator over items; ``prefetch`` runs a stage in its own thread behind a
bounded queue, so decoding, inference and encoding overlap and memory stays constant whatever
the film's length. Packets copied from the source (audio, subtitles) ride along in order.
A temporal smoothing stage slots in between colourise and join with the same item types.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from vidcolor.color import join_lab, resize_plane, to_uint
from vidcolor.engines.base import Engine
from vidcolor.media.decode import CopiedPackets, DecodedFrame
from vidcolor.media.encode import VideoWriter
from vidcolor.models.generator import SIZE_MULTIPLE

T = TypeVar("T")


@dataclass
class ColorizedFrame:
    index: int
    pts: int
    luminance: np.ndarray  # (H, W) float32, full resolution
    ab: np.ndarray  # (h, w, 2) float32 at render size


@dataclass
class RenderedFrame:
    index: int
    pts: int
    rgb: np.ndarray  # (H, W, 3) uint8 or uint16


def render_shape(width: int, height: int, short_side: int) -> tuple[int, int]:
    """Working size (w, h) for the generator: short side ~short_side, aspect kept, x32."""
    if short_side < SIZE_MULTIPLE:
        raise ValueError(f"render size must be at least {SIZE_MULTIPLE}")
    scale = short_side / min(width, height)

    def snap(side: float) -> int:
        return max(SIZE_MULTIPLE, int(round(side / SIZE_MULTIPLE)) * SIZE_MULTIPLE)

    return snap(width * scale), snap(height * scale)


def predict_ab(
    engine: Engine, planes: list[np.ndarray], shape: tuple[int, int]
) -> list[np.ndarray]:
    """Colourise full-resolution L planes at render ``shape`` (w, h); returns (h, w, 2) ab each."""
    width, height = shape
    batch = np.stack([resize_plane(p, width, height) for p in planes])[:, None]
    ab = engine.infer(batch.astype(np.float32, copy=False))
    return [np.ascontiguousarray(a.transpose(1, 2, 0)) for a in ab]


# --- stages -----------------------------------------------------------------------------


def colorize_stage(
    items: Iterable[DecodedFrame | CopiedPackets], engine: Engine, render_size: int, batch_size: int
) -> Iterator[ColorizedFrame | CopiedPackets]:
    """Batch frames through the engine; copied packets keep their place in the stream."""
    held: list[DecodedFrame | CopiedPackets] = []
    frames_held = 0
    shape: tuple[int, int] | None = None

    def flush() -> Iterator[ColorizedFrame | CopiedPackets]:
        frames = [item for item in held if isinstance(item, DecodedFrame)]
        abs_ = iter(predict_ab(engine, [f.luminance for f in frames], shape)) if frames else None
        for item in held:
            if isinstance(item, DecodedFrame):
                yield ColorizedFrame(item.index, item.pts, item.luminance, next(abs_))
            else:
                yield item

    for item in items:
        held.append(item)
        if isinstance(item, DecodedFrame):
            if shape is None:
                height, width = item.luminance.shape
                shape = render_shape(width, height, render_size)
            frames_held += 1
            if frames_held == batch_size:
                yield from flush()
                held, frames_held = [], 0
    yield from flush()


def join_stage(
    items: Iterable[ColorizedFrame | CopiedPackets], dtype: type[np.integer]
) -> Iterator[RenderedFrame | CopiedPackets]:
    """Upsample ab to full size and join it with the source's own L."""
    for item in items:
        if isinstance(item, ColorizedFrame):
            rgb = to_uint(join_lab(item.luminance, item.ab), dtype)
            yield RenderedFrame(item.index, item.pts, rgb)
        else:
            yield item


def encode_stage(
    items: Iterable[RenderedFrame | CopiedPackets],
    writer: VideoWriter,
    on_frame: Callable[[], None] | None = None,
) -> None:
    for item in items:
        if isinstance(item, RenderedFrame):
            writer.write(item.rgb, item.pts)
            if on_frame is not None:
                on_frame()
        else:
            writer.copy(item.packets)
    writer.close()


# --- threads ------------------------------------------------------------------------------

_DONE = object()


class _Failure:
    def __init__(self, error: BaseException):
        self.error = error


def prefetch(items: Iterable[T], depth: int) -> Iterator[T]:
    """Run ``items`` in a worker thread, at most ``depth`` items ahead of the consumer.

    Errors in the worker re-raise in the consumer; a consumer that stops early stops the worker.
    """
    buffer: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(value: object) -> bool:
        while not stop.is_set():
            try:
                buffer.put(value, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for item in items:
                if not put(item):
                    return
            put(_DONE)
        except BaseException as exc:  # handed to the consumer, which re-raises it
            put(_Failure(exc))

    worker = threading.Thread(target=work, name="vidcolor-stage", daemon=True)
    worker.start()
    try:
        while True:
            value = buffer.get()
            if value is _DONE:
                return
            if isinstance(value, _Failure):
                raise value.error
            yield value  # type: ignore[misc]
    finally:
        stop.set()
        worker.join(timeout=5)
