"""The stages of a film's journey: decode -> colourise -> (smooth) -> join -> encode.

Each stage is a generator over items. ``run_film`` wires them: decoding and colourising run in
threads of their own behind bounded queues (``StageThreads``), so decoding, inference and
encoding overlap and memory stays constant whatever the film's length; joining and encoding run
in the caller's thread. Packets copied from the source (audio, subtitles) ride along in order.
A temporal smoothing stage slots in between colourise and join with the same item types.

Teardown is the point of ``StageThreads``: whatever ends a film (its last frame, an encoder
error, a full disk, Ctrl-C), every stage thread is stopped and joined before ``run_film``
returns, so the caller can close the reader and writer without a thread still inside them.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from vidcolor.color import join_lab_uint, resize_plane
from vidcolor.engines.base import Engine
from vidcolor.media.decode import CopiedPackets, DecodedFrame, VideoReader
from vidcolor.media.encode import VideoWriter
from vidcolor.models import SIZE_MULTIPLE
from vidcolor.options import DEFAULT_RENDER_SIZE, RunOptions

# The working size's long side is at most this many times its short side, so a 2x20000
# strip is not colourised at 160x1600000.
MAX_RENDER_ASPECT = 4

T = TypeVar("T")


@dataclass
class ColorizedFrame:
    index: int
    pts: int
    luminance: np.ndarray  # (H, W) float32, full resolution
    ab: np.ndarray  # (h, w, 2) float32 at render size
    # (h, w) float32 L at render size, what the generator saw: the temporal stage's flow runs on it
    render_luminance: np.ndarray | None = None


@dataclass
class RenderedFrame:
    index: int
    pts: int
    rgb: np.ndarray  # (H, W, 3) uint8 or uint16


def render_shape(width: int, height: int, short_side: int) -> tuple[int, int]:
    """Working size (w, h) for the generator: short side ~short_side, aspect kept, x32.

    Bounded by both sides: the long side never exceeds MAX_RENDER_ASPECT x short_side, so
    extreme strips are colourised at a modest size instead of asking for gigabytes. Never
    larger than the source beyond the default render size (colour finer than the picture is
    wasted): --render-size 2048 on a 64x48 clip works at 160, not at 2048.
    """
    if short_side < SIZE_MULTIPLE:
        raise ValueError(f"render size must be at least {SIZE_MULTIPLE}")
    short_side = min(short_side, max(min(width, height), DEFAULT_RENDER_SIZE))
    scale = min(
        short_side / min(width, height), MAX_RENDER_ASPECT * short_side / max(width, height)
    )

    def snap(side: float) -> int:
        return max(SIZE_MULTIPLE, int(round(side / SIZE_MULTIPLE)) * SIZE_MULTIPLE)

    return snap(width * scale), snap(height * scale)


def predict_ab(
    engine: Engine, planes: list[np.ndarray], shape: tuple[int, int]
) -> list[np.ndarray]:
    """Colourise full-resolution L planes at render ``shape`` (w, h); returns (h, w, 2) ab each."""
    return infer_ab(engine, render_planes(planes, shape))


def render_planes(planes: list[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """Full-resolution L planes at render ``shape`` (w, h), as one (n, h, w) float32 batch."""
    width, height = shape
    return np.stack([resize_plane(p, width, height) for p in planes]).astype(np.float32, copy=False)


def infer_ab(engine: Engine, small: np.ndarray) -> list[np.ndarray]:
    """a,b (h, w, 2) for each render-size L plane of an (n, h, w) batch."""
    ab = engine.infer(small[:, None])
    return [np.ascontiguousarray(a.transpose(1, 2, 0)) for a in ab]


# --- stages -----------------------------------------------------------------------------


def in_batches(
    items: Iterable[object], kind: type, batch_size: int, convert: Callable[[list], list]
) -> Iterator[object]:
    """``convert`` the items of ``kind`` a batch at a time; other items keep their place."""
    held: list[object] = []
    count = 0

    def flush() -> Iterator[object]:
        frames = [item for item in held if isinstance(item, kind)]
        results = iter(convert(frames) if frames else [])
        for item in held:
            yield next(results) if isinstance(item, kind) else item

    for item in items:
        held.append(item)
        if isinstance(item, kind):
            count += 1
            if count == batch_size:
                yield from flush()
                held, count = [], 0
    yield from flush()


def colorize_stage(
    items: Iterable[DecodedFrame | CopiedPackets], engine: Engine, render_size: int, batch_size: int
) -> Iterator[ColorizedFrame | CopiedPackets]:
    """Batch frames through the engine; copied packets keep their place in the stream."""
    shape: tuple[int, int] | None = None

    def colorize(frames: list[DecodedFrame]) -> list[ColorizedFrame]:
        nonlocal shape
        if shape is None:
            height, width = frames[0].luminance.shape
            shape = render_shape(width, height, render_size)
        small = render_planes([f.luminance for f in frames], shape)
        return [
            ColorizedFrame(f.index, f.pts, f.luminance, ab, plane)
            for f, ab, plane in zip(frames, infer_ab(engine, small), small, strict=True)
        ]

    return in_batches(items, DecodedFrame, batch_size, colorize)  # type: ignore[return-value]


def join_stage(
    items: Iterable[ColorizedFrame | CopiedPackets],
    dtype: type[np.integer],
    device: str = "cpu",
    batch_size: int = 1,
) -> Iterator[RenderedFrame | CopiedPackets]:
    """Upsample ab to full size and join it with the source's own L.

    On a CUDA engine frames are joined in batches on the GPU (``color_torch``), where the
    full-resolution work costs least; on the CPU one frame at a time with OpenCV.
    """
    if device.startswith("cuda"):
        from vidcolor.color_torch import join_lab_batch

        def join(frames: list[ColorizedFrame]) -> list[RenderedFrame]:
            lum, ab = [f.luminance for f in frames], [f.ab for f in frames]
            rgbs = join_lab_batch(lum, ab, device, dtype)
            return [RenderedFrame(f.index, f.pts, rgb) for f, rgb in zip(frames, rgbs, strict=True)]

    else:
        batch_size = 1

        def join(frames: list[ColorizedFrame]) -> list[RenderedFrame]:
            return [
                RenderedFrame(f.index, f.pts, join_lab_uint(f.luminance, f.ab, dtype))
                for f in frames
            ]

    return in_batches(items, ColorizedFrame, batch_size, join)  # type: ignore[return-value]


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


# --- one film ------------------------------------------------------------------------------


def run_film(
    reader: VideoReader,
    writer: VideoWriter,
    engine: Engine,
    options: RunOptions,
    on_frame: Callable[[], None] | None = None,
    frames: tuple[int, int] | None = None,
) -> int:
    """Colourise a whole film from ``reader`` into ``writer``; returns the frames written.

    The one place a film is wired, for the API, the CLI and batch workers alike. On success
    the writer is finished; on any failure it is aborted. Either way every stage thread has
    stopped before this returns, so the caller may then close the reader.

    ``frames`` ``(first, end)``: a chunk of a film, read with warm-up frames around it (see
    ``vidcolor.batch.chunks``); only frames ``first..end-1`` are written.
    """
    depth = np.uint16 if writer.high_bit_depth else np.uint8
    try:
        with StageThreads(options.queue_depth) as threads:
            decoded = threads.start(reader.frames(), "decode")
            colorized = threads.start(
                colorize_stage(decoded, engine, options.render_size, options.batch_size),
                "colorize",
            )
            if options.temporal:
                from vidcolor.temporal import smooth_stage, temporal_settings

                settings = temporal_settings(options)
                first, end = frames if frames is not None else (0, None)
                colorized = threads.start(smooth_stage(colorized, settings, first, end), "smooth")
            rendered = join_stage(colorized, depth, engine.device, options.batch_size)
            encode_stage(rendered, writer, on_frame)
        writer.close()
    except BaseException:
        writer.abort()
        raise
    return writer.frames_written


# --- threads ------------------------------------------------------------------------------

_DONE = object()


class _Failure:
    def __init__(self, error: BaseException):
        self.error = error


class StageCancelled(Exception):
    """Raised in a stage whose pipeline is being torn down; never reaches the user."""


class StageThreads:
    """The threads of one pipeline, stopped and joined together when it closes.

    ``start(items)`` runs an iterable in a worker thread at most ``depth`` items ahead of its
    consumer; errors in the worker re-raise in the consumer. Closing (leaving the ``with``
    block, normally or through an exception) cancels every stage, waits for each thread to
    finish, and closes each stage's generator in its own thread.
    """

    def __init__(self, depth: int):
        self.depth = depth
        self.cancel = threading.Event()
        # Each stage's thread, with the Event its work sets when its cleanup has run.
        self.stages: list[tuple[threading.Thread, threading.Event]] = []

    @property
    def threads(self) -> list[threading.Thread]:
        return [thread for thread, _ in self.stages]

    def __enter__(self) -> StageThreads:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Waits for every stage, even through a signal, then re-raises that signal.

        No timeout: a stage is at most one batch away from noticing the cancel, and closing a
        container under a live thread is how decoders crash. Each stage's own Event is waited
        on, not ``Thread.join``: a signal handler raising inside ``join`` makes Python 3.11 and
        3.12 take the still-running thread for finished (CPython gh-90882).
        """
        self.cancel.set()
        interrupted: BaseException | None = None
        for thread, finished in self.stages:
            while True:
                try:
                    finished.wait()
                    thread.join()  # its work is done: only the thread's exit is left
                    break
                except BaseException as exc:  # the first signal: wait on, raise it after
                    interrupted = interrupted or exc
        self.stages.clear()
        if interrupted is not None:
            raise interrupted

    def start(self, items: Iterable[T], name: str) -> Iterator[T]:
        buffer: queue.Queue[object] = queue.Queue(maxsize=self.depth)
        cancel = self.cancel
        finished = threading.Event()

        def put(value: object) -> bool:
            while not cancel.is_set():
                try:
                    buffer.put(value, timeout=0.05)
                    return True
                except queue.Full:
                    continue
            return False

        def work() -> None:
            iterator = iter(items)
            try:
                for item in iterator:
                    if not put(item):
                        return
                put(_DONE)
            except StageCancelled:
                return
            except BaseException as exc:  # handed to the consumer, which re-raises it
                put(_Failure(exc))
            finally:
                try:
                    close = getattr(iterator, "close", None)
                    if close is not None:
                        close()  # the stage's own cleanup runs here, in its thread
                finally:
                    finished.set()

        thread = threading.Thread(target=work, name=f"vidcolor-{name}", daemon=True)
        self.stages.append((thread, finished))
        thread.start()
        return self._consume(buffer)

    def _consume(self, buffer: queue.Queue[object]) -> Iterator[T]:
        while True:
            if self.cancel.is_set():
                raise StageCancelled()
            try:
                value = buffer.get(timeout=0.05)
            except queue.Empty:
                continue
            if value is _DONE:
                return
            if isinstance(value, _Failure):
                raise value.error
            yield value  # type: ignore[misc]


def prefetch(items: Iterable[T], depth: int) -> Iterator[T]:
    """Run ``items`` in a worker thread of its own (for callers outside a film pipeline)."""
    threads = StageThreads(depth)
    try:
        yield from threads.start(items, "prefetch")
    finally:
        threads.close()
