"""The temporal stage inside whole films: run_film with it on and off, and deflicker_video.

A fake engine that flickers stands in for the model (the model is not the point here), so the
films are small and the expected colour is known.
"""

from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from conftest import FAST_RENDER, colour_film_frames, film_facts, packets_of

from vidcolor import RunOptions, colorize_video
from vidcolor.errors import VidcolorError
from vidcolor.media.decode import VideoReader
from vidcolor.metrics import mean_ab_change
from vidcolor.options import EncodeSettings
from vidcolor.temporal.deflicker import deflicker_video

LOSSLESS = EncodeSettings(codec="ffv1")


class FlickerEngine:
    """Predicts one colour (a=20, b=30) that jumps by a random amount on every frame."""

    name = "flicker"
    device = "cpu"

    def __init__(self, amount: float = 8.0, seed: int = 0):
        self.amount = amount
        self.rng = np.random.default_rng(seed)

    def infer(self, batch_l: np.ndarray) -> np.ndarray:
        out = np.empty((batch_l.shape[0], 2, *batch_l.shape[2:]), np.float32)
        for k in range(batch_l.shape[0]):
            jump = self.rng.normal(0, self.amount, 2)
            out[k, 0], out[k, 1] = 20 + jump[0], 30 + jump[1]
        return out


def lab_frames(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [
            cv2.cvtColor(f.to_ndarray(format="rgb24").astype(np.float32) / 255, cv2.COLOR_RGB2Lab)
            for f in container.decode(video=0)
        ]


def p95_change(labs: list[np.ndarray]) -> float:
    moves = [mean_ab_change(a[..., 1:], b[..., 1:]) for a, b in zip(labs, labs[1:], strict=False)]
    return float(np.percentile(moves, 95))


@pytest.fixture
def grey_pan(tmp_path, make_colour_video) -> Path:
    """A black-and-white film that pans (the colour film's luminance)."""
    colour = make_colour_video("pan.mp4", frames=24, flicker=0.0)
    grey = tmp_path / "grey.mkv"
    with av.open(str(colour)) as inp, av.open(str(grey), "w") as out:
        stream = out.add_stream("ffv1", rate=29)
        stream.width, stream.height, stream.pix_fmt = 96, 64, "gray"
        for frame in inp.decode(video=0):
            g = cv2.cvtColor(frame.to_ndarray(format="rgb24"), cv2.COLOR_RGB2GRAY)
            new = av.VideoFrame.from_ndarray(g, format="gray")
            new.pts, new.time_base = frame.pts, frame.time_base
            out.mux(stream.encode(new))
        out.mux(stream.encode(None))
    return grey


def test_run_film_steadies_a_flickering_engine(grey_pan, tmp_path):
    smooth, plain = tmp_path / "smooth.mkv", tmp_path / "plain.mkv"
    options = RunOptions(render_size=FAST_RENDER, encode=LOSSLESS)
    colorize_video(grey_pan, smooth, options, engine=FlickerEngine())
    colorize_video(grey_pan, plain, options.with_(temporal=False), engine=FlickerEngine())
    assert film_facts(smooth).pts == film_facts(plain).pts == film_facts(grey_pan).pts
    smoothed, per_frame = lab_frames(smooth), lab_frames(plain)
    assert p95_change(smoothed) < 0.35 * p95_change(per_frame)
    np.testing.assert_array_equal(smoothed[0], per_frame[0])  # the first frame: as predicted
    # the luminance is the source's own, with or without smoothing
    assert np.abs(smoothed[10][..., 0] - per_frame[10][..., 0]).max() < 1.0


def test_deflicker_keeps_luminance_timing_and_audio(make_colour_video, tmp_path):
    source = make_colour_video("flicker.mp4", frames=24, flicker=8.0, audio=True)
    out = tmp_path / "steady.mp4"
    result = deflicker_video(source, out, RunOptions(render_size=FAST_RENDER))
    assert result.frames == 24 and result.copied_streams == ["audio #1"]
    before, after = film_facts(source), film_facts(out)
    assert after.pts == before.pts and after.time_base == before.time_base
    assert after.duration == before.duration
    assert packets_of(out, "audio") == packets_of(source, "audio")
    source_lab, out_lab = lab_frames(source), lab_frames(out)
    for a, b in zip(source_lab, out_lab, strict=True):
        assert np.abs(a[..., 0] - b[..., 0]).mean() < 1.0  # luminance kept (4:2:0 encode)
    assert p95_change(out_lab) < 0.35 * p95_change(source_lab)
    # the colour it settles on is the film's own average, not another one
    mean_in = np.mean([f[..., 1:].mean(axis=(0, 1)) for f in source_lab], axis=0)
    mean_out = np.mean([f[..., 1:].mean(axis=(0, 1)) for f in out_lab], axis=0)
    assert np.abs(mean_in - mean_out).max() < 2.5


def test_deflicker_of_a_steady_film_changes_nothing_visible(make_colour_video, tmp_path):
    source = make_colour_video("steady.mp4", frames=12, flicker=0.0)
    out = tmp_path / "out.mkv"
    deflicker_video(source, out, RunOptions(render_size=FAST_RENDER, encode=LOSSLESS))
    for a, b in zip(lab_frames(source), lab_frames(out), strict=True):
        assert np.abs(a - b).mean() < 0.5  # 8-bit rounding of a,b is all there is to steady
        assert np.abs(a - b).max() < 3


def test_deflicker_strength_zero_is_the_film_itself(make_colour_video, tmp_path):
    source = make_colour_video("flicker.mp4", frames=8)
    out = tmp_path / "out.mkv"
    options = RunOptions(render_size=FAST_RENDER, encode=LOSSLESS, temporal_strength=0)
    deflicker_video(source, out, options)
    expected = colour_film_frames(8)
    with av.open(str(out)) as container:
        for frame, rgb in zip(container.decode(video=0), expected, strict=True):
            # h264 4:4:4 at crf 12 on the way in; exact chroma round trip otherwise
            assert np.abs(frame.to_ndarray(format="rgb24").astype(int) - rgb).mean() < 2


def test_deflicker_refuses_a_still(make_image, tmp_path):
    with pytest.raises(VidcolorError, match="is an image"):
        deflicker_video(make_image("rgb_png"), tmp_path / "out.mp4")


def test_reader_keeps_chroma_on_request(make_colour_video):
    source = make_colour_video("c.mp4", frames=3, flicker=0.0)
    with VideoReader(source, chroma=True) as reader:
        frames = [f for f in reader.frames() if hasattr(f, "ab")]
    assert frames[0].ab is not None and frames[0].ab.shape == (64, 96, 2)
    assert frames[0].ab[..., 0].mean() == pytest.approx(20, abs=2)
    assert frames[0].ab[..., 1].mean() == pytest.approx(30, abs=2)
    with VideoReader(source) as reader:
        assert all(getattr(f, "ab", None) is None for f in reader.frames())
