import threading

import numpy as np
import pytest

from vidcolor.media.decode import CopiedPackets, DecodedFrame
from vidcolor.pipeline import (
    ColorizedFrame,
    RenderedFrame,
    StageThreads,
    colorize_stage,
    join_stage,
    prefetch,
    render_shape,
)


class ConstantAbEngine:
    """Test double: predicts one fixed colour and records the batches it saw."""

    name = "constant"
    device = "cpu"

    def __init__(self, a: float = 30.0, b: float = 10.0):
        self.ab = (a, b)
        self.batches: list[tuple[int, ...]] = []

    def infer(self, batch_l: np.ndarray) -> np.ndarray:
        self.batches.append(batch_l.shape)
        out = np.empty((batch_l.shape[0], 2, *batch_l.shape[2:]), np.float32)
        out[:, 0], out[:, 1] = self.ab
        return out


def frames(count: int, height: int = 50, width: int = 70) -> list[DecodedFrame]:
    return [
        DecodedFrame(i, i * 512, np.full((height, width), 50.0, np.float32)) for i in range(count)
    ]


@pytest.mark.parametrize(
    ("size", "short", "expected"),
    [
        ((432, 320), 256, (352, 256)),
        ((320, 432), 256, (256, 352)),
        ((1920, 1080), 256, (448, 256)),
        ((64, 64), 256, (160, 160)),  # no finer than the source beyond the default 160
        ((64, 48), 2048, (224, 160)),
        ((97, 55), 64, (128, 64)),
    ],
)
def test_render_shape_keeps_aspect_in_multiples_of_32(size, short, expected):
    assert render_shape(*size, short) == expected


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ((2, 20000), (32, 640)),  # was 160 x 1600000: 8 GB for a 138-byte PNG
        ((65535, 1), (640, 32)),
        ((12000, 12000), (160, 160)),
        ((3000, 1000), (480, 160)),  # ordinary panoramas keep the full render size
    ],
)
def test_render_shape_is_bounded_by_both_sides(size, expected):
    assert render_shape(*size, 160) == expected


def test_colorize_stage_batches_frames_and_keeps_packets_in_place():
    engine = ConstantAbEngine()
    marker_a, marker_b = CopiedPackets(["a"]), CopiedPackets(["b"])
    items = [*frames(3)[:2], marker_a, frames(3)[2], marker_b]
    out = list(colorize_stage(items, engine, render_size=64, batch_size=2))
    assert [type(i).__name__ for i in out] == [
        "ColorizedFrame",
        "ColorizedFrame",
        "CopiedPackets",
        "ColorizedFrame",
        "CopiedPackets",
    ]
    assert out[2] is marker_a and out[4] is marker_b
    assert [b[0] for b in engine.batches] == [2, 1]
    assert engine.batches[0][2:] == (64, 96)  # 70x50 -> short side 64, x32
    assert [f.index for f in out if isinstance(f, ColorizedFrame)] == [0, 1, 2]


def test_join_stage_restores_full_size_and_adds_colour():
    engine = ConstantAbEngine(a=40.0, b=0.0)
    colour = list(colorize_stage(frames(1), engine, render_size=64, batch_size=4))
    rendered = list(join_stage(colour, np.uint8))
    assert isinstance(rendered[0], RenderedFrame)
    rgb = rendered[0].rgb
    assert rgb.shape == (50, 70, 3) and rgb.dtype == np.uint8
    assert (rgb[..., 0].astype(int) - rgb[..., 1]).min() > 20  # reddish, as predicted
    sixteen = list(join_stage(colour, np.uint16))[0].rgb
    assert sixteen.dtype == np.uint16


def test_prefetch_keeps_order_and_bounds_the_lead():
    produced = []

    def source():
        for i in range(100):
            produced.append(i)
            yield i

    stream = prefetch(source(), depth=4)
    assert next(stream) == 0
    assert len(produced) <= 1 + 4 + 2  # the worker cannot run far ahead
    assert list(stream) == list(range(1, 100))


def test_prefetch_reraises_worker_errors():
    def broken():
        yield 1
        raise RuntimeError("decoder failed")

    stream = prefetch(broken(), depth=2)
    assert next(stream) == 1
    with pytest.raises(RuntimeError, match="decoder failed"):
        next(stream)


def test_prefetch_stops_its_worker_when_the_consumer_leaves():
    def endless():
        i = 0
        while True:
            yield i
            i += 1

    before = threading.active_count()
    stream = prefetch(endless(), depth=2)
    next(stream)
    stream.close()
    assert threading.active_count() == before


def test_stage_threads_stop_and_close_every_stage_when_the_consumer_fails():
    """The root of a crash: a stage thread still reading a container its owner closed."""
    closed_in: list[str] = []
    pulled: list[int] = []

    def decode():
        try:
            for i in range(10_000):
                pulled.append(i)
                yield i
        finally:
            closed_in.append(threading.current_thread().name)

    def double(items):
        for item in items:
            yield item * 2

    with pytest.raises(RuntimeError, match="encoder failed"), StageThreads(depth=4) as threads:
        decoded = threads.start(decode(), "decode")
        doubled = threads.start(double(decoded), "colorize")
        started = list(threads.threads)
        for value in doubled:
            if value == 40:
                raise RuntimeError("encoder failed")
    assert len(started) == 2 and not any(t.is_alive() for t in started)
    assert closed_in == ["vidcolor-decode"]  # closed in its own thread, before the with ended
    assert len(pulled) < 100  # bounded queues: decode never ran far ahead


def test_a_signal_while_closing_still_waits_for_every_stage(saved_handlers):
    """The first Ctrl-C may land while the stages are being joined: close still waits for the
    stage's cleanup (else a decoder is closed under it), then raises the signal."""
    import os
    import signal
    import time

    from vidcolor import signals

    cleaned = []

    def decode():
        try:
            while True:
                yield 1
        finally:
            time.sleep(0.6)  # a slow cleanup, e.g. a decoder flushing
            cleaned.append(True)

    signals.install_interrupt_handlers()
    threads = StageThreads(depth=2)
    next(threads.start(decode(), "decode"))
    timer = threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGTERM))
    timer.start()
    try:
        with pytest.raises(signals.Interrupted):
            threads.close()
    finally:
        timer.cancel()
    assert cleaned == [True]


def test_stage_threads_pass_worker_errors_through_every_stage():
    def decode():
        yield 1
        raise ValueError("corrupt at frame 1")

    with StageThreads(depth=2) as threads:
        passed = threads.start((x for x in threads.start(decode(), "decode")), "colorize")
        assert next(passed) == 1
        with pytest.raises(ValueError, match="corrupt at frame 1"):
            next(passed)
        started = list(threads.threads)
    assert not any(t.is_alive() for t in started)


def test_in_batches_keeps_every_item_in_place_and_batches_only_its_kind():
    from vidcolor.pipeline import in_batches

    seen = []

    def double(batch):
        seen.append(list(batch))
        return [2 * x for x in batch]

    items = [1, "a", 2, 3, "b", "c", 4, 5, "d"]
    assert list(in_batches(items, int, 2, double)) == [2, "a", 4, 6, "b", "c", 8, 10, "d"]
    assert seen == [[1, 2], [3, 4], [5]]
    assert list(in_batches(["x"], int, 2, double)) == ["x"]  # no frames: convert never runs
    assert len(seen) == 3


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="no CUDA GPU")
def test_join_stage_on_a_gpu_equals_the_cpu_join():
    from vidcolor.pipeline import ColorizedFrame, join_stage

    rng = np.random.default_rng(0)
    frames = [
        ColorizedFrame(
            i,
            i,
            (rng.random((72, 128)) * 100).astype(np.float32),
            ((rng.random((32, 64, 2)) - 0.5) * 80).astype(np.float32),
        )
        for i in range(5)
    ]
    cpu = list(join_stage(iter(frames), np.uint8))
    gpu = list(join_stage(iter(frames), np.uint8, "cuda", 2))
    for a, b in zip(cpu, gpu, strict=True):
        assert a.index == b.index and np.abs(a.rgb.astype(int) - b.rgb.astype(int)).max() <= 1
