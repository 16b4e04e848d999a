"""vidcolor.temporal: flow warping, the confidence mask, shot cuts, the filter and its stage.

Everything runs on small generated scenes (a smooth random texture that pans), so the motion,
the occlusions and the cuts are known exactly.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from vidcolor.errors import VidcolorError
from vidcolor.media.decode import CopiedPackets, DecodedFrame
from vidcolor.metrics import mean_ab_change, warp_error
from vidcolor.options import RunOptions
from vidcolor.pipeline import ColorizedFrame, colorize_stage
from vidcolor.temporal.cuts import CutDetector, find_cuts
from vidcolor.temporal.flow import FlowEstimator, non_occluded, warp
from vidcolor.temporal.smooth import TemporalFilter, TemporalSettings, confidence
from vidcolor.temporal.stage import chunk_reads, smooth_stage

WIDTH, HEIGHT = 96, 64


def texture(seed: int, width: int = 400, height: int = 300) -> np.ndarray:
    """A smooth random L texture (20..80) with structure at several scales."""
    rng = np.random.default_rng(seed)
    plane = np.zeros((height, width), np.float32)
    for sigma, amount in ((1.5, 0.4), (4.0, 0.6), (10.0, 1.0)):
        noise = cv2.GaussianBlur(rng.random((height, width)).astype(np.float32), (0, 0), sigma)
        plane += amount * (noise - noise.mean()) / noise.std()
    plane = (plane - plane.min()) / (plane.max() - plane.min())
    return (20 + 60 * plane).astype(np.float32)


def pan(seed: int, frames: int, step: tuple[int, int] = (2, 1)) -> list[np.ndarray]:
    """A camera pan over one texture: frame t is shifted by t * step pixels."""
    canvas = texture(seed)
    return [
        np.ascontiguousarray(
            canvas[20 + t * step[1] : 20 + t * step[1] + HEIGHT, 30 + t * step[0] :][:, :WIDTH]
        )
        for t in range(frames)
    ]


def flicker_ab(count: int, seed: int = 7, amount: float = 8.0) -> list[np.ndarray]:
    """A steady colour (a=20, b=30) whose whole-frame value jumps each frame, as per-frame
    colourisers do."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        jump = rng.normal(0, amount, 2).astype(np.float32)
        ab = np.empty((HEIGHT, WIDTH, 2), np.float32)
        ab[..., 0], ab[..., 1] = 20 + jump[0], 30 + jump[1]
        out.append(ab)
    return out


def run_filter(
    planes: list[np.ndarray], abs_: list[np.ndarray], settings: TemporalSettings | None = None
) -> tuple[list[np.ndarray], list[int]]:
    filter_: TemporalFilter[int] = TemporalFilter(settings)
    out: dict[int, np.ndarray] = {}
    cuts: list[int] = []

    def take() -> None:
        for index, ab, cut in filter_.ready():
            out[index] = ab
            if cut:
                cuts.append(index)

    for index, (lum, ab) in enumerate(zip(planes, abs_, strict=True)):
        filter_.push(index, lum, ab, index)
        take()
    filter_.finish()
    take()
    assert sorted(out) == list(range(len(planes)))  # each frame exactly once
    return [out[i] for i in range(len(planes))], cuts


def changes(abs_: list[np.ndarray]) -> np.ndarray:
    return np.array([mean_ab_change(a, b) for a, b in zip(abs_, abs_[1:], strict=False)])


# --- flow and warping --------------------------------------------------------------------


def test_warp_undoes_a_known_shift_exactly():
    canvas = texture(0)
    first = np.ascontiguousarray(canvas[20 : 20 + HEIGHT, 30 : 30 + WIDTH])
    second = np.ascontiguousarray(canvas[18 : 18 + HEIGHT, 33 : 33 + WIDTH])  # view moved (3, -2)
    flow = np.zeros((HEIGHT, WIDTH, 2), np.float32)
    flow[..., 0], flow[..., 1] = -3, 2  # where each pixel of `first` is in `second`
    back = warp(second, flow)
    inner = (slice(4, -4), slice(4, -4))
    assert np.abs(back[inner] - first[inner]).max() < 1e-4


def test_dis_flow_recovers_a_shift_and_the_warp_undoes_it():
    first, second = pan(0, 2, step=(3, 1))
    flow = FlowEstimator("medium")(first, second)
    inner = (slice(8, -8), slice(8, -8))
    # the view moves by (3, 1), so the scene moves by (-3, -1)
    assert np.median(flow[inner][..., 0]) == pytest.approx(-3, abs=0.2)
    assert np.median(flow[inner][..., 1]) == pytest.approx(-1, abs=0.2)
    assert np.abs(warp(second, flow)[inner] - first[inner]).mean() < 0.5
    assert np.abs(second[inner] - first[inner]).mean() > 3  # the shift did matter


def test_warp_error_is_zero_for_content_that_moves_with_the_flow():
    frames = pan(1, 2, step=(2, 0))
    estimator = FlowEstimator("medium")
    forward = estimator(frames[0], frames[1])
    valid = non_occluded(forward, estimator(frames[1], frames[0]))
    assert valid[8:-8, 8:-8].mean() > 0.9  # a plain pan hides almost nothing
    colour = [np.dstack([f / 4, 100 - f]) for f in frames]  # colour that sticks to the scene
    steady = warp_error(colour[0], colour[1], forward, valid)
    jumped = warp_error(colour[0], colour[1] + 5, forward, valid)
    assert steady < 1.0
    assert jumped == pytest.approx(steady + 50, abs=3)  # 5^2 + 5^2


# --- the confidence mask -------------------------------------------------------------------


def occluded_pair() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frame 0, frame 1 (the scene panned and a dark square come in), the square's mask."""
    first, second = pan(2, 2, step=(2, 1))
    second = second.copy()
    square = np.zeros((HEIGHT, WIDTH), bool)
    square[20:44, 40:70] = True
    second[square] = 5.0 + 3 * texture(9)[:HEIGHT, :WIDTH][square] / 80
    return first, second, square


def test_confidence_is_low_where_an_object_appears_and_high_elsewhere():
    first, second, square = occluded_pair()
    estimator = FlowEstimator("medium")
    back, ahead = estimator(second, first), estimator(first, second)
    trust = confidence(second, first, back, ahead, TemporalSettings())
    inside = trust[24:40, 44:66].mean()
    away = np.ones_like(square)
    away[12:52, 30:80] = False
    away[:6], away[-6:], away[:, :6], away[:, -6:] = False, False, False, False
    assert inside < 0.2
    assert trust[away].mean() > 0.7


def test_confidence_distrusts_a_consistent_flow_where_the_picture_does_not_match():
    """Flow can agree with itself and still be wrong (a new object the flow smoothed over):
    after warping, L must match too."""
    first, moved, square = occluded_pair()
    second = first.copy()
    second[square] = moved[square]  # the dark square, with no motion anywhere
    still = np.zeros((HEIGHT, WIDTH, 2), np.float32)  # both ways: perfectly consistent
    trust = confidence(second, first, still, still, TemporalSettings())
    assert trust[24:40, 44:66].mean() < 0.05
    assert trust[:12, :30].mean() > 0.95


def test_confidence_ignores_a_global_brightness_change_but_not_an_object():
    first, _, square = occluded_pair()
    second = np.clip(first * 1.25 + 6, 0, 100)  # film flicker, a fade: the same picture
    still = np.zeros((HEIGHT, WIDTH, 2), np.float32)
    trust = confidence(second, first, still, still, TemporalSettings())
    assert trust.mean() > 0.95
    second[square] = first[square] * 0.3  # and now a shadow falls on part of it
    trust = confidence(second, first, still, still, TemporalSettings())
    assert trust[24:40, 44:66].mean() < 0.05
    assert trust[:12, :30].mean() > 0.95


def test_an_occluding_object_takes_its_own_new_colour():
    first, second, square = occluded_pair()
    planes = [*pan(2, 1), second]
    for later in pan(2, 4, step=(2, 1))[2:]:  # the square stays on
        later = later.copy()
        later[square] = second[square]
        planes.append(later)
    abs_ = [np.full((HEIGHT, WIDTH, 2), (0.0, 40.0), np.float32) for _ in planes]
    for ab in abs_[1:]:
        ab[square] = (50.0, -20.0)  # the square is predicted red-blue from its first frame
    out, _ = run_filter(planes, abs_)
    inner = out[1][26:38, 46:64]
    assert np.abs(inner - np.array([50.0, -20.0])).max() < 6  # not smeared with the blue
    background = out[1][:12, :30]
    assert np.abs(background - np.array([0.0, 40.0])).max() < 1


# --- the filter ------------------------------------------------------------------------------


def test_flicker_is_steadied_along_the_motion():
    planes = pan(4, 30, step=(2, 1))
    abs_ = flicker_ab(30)
    out, cuts = run_filter(planes, abs_)
    assert cuts == []
    before, after = changes(abs_), changes(out)
    assert np.percentile(after, 95) < 0.35 * np.percentile(before, 95)
    # the average colour is kept, not washed out
    assert np.mean([o.mean(axis=(0, 1)) for o in out], axis=0) == pytest.approx(
        np.mean([a.mean(axis=(0, 1)) for a in abs_], axis=0), abs=2.0
    )


def test_strength_zero_leaves_every_frame_as_predicted():
    planes = pan(4, 8)
    abs_ = flicker_ab(8)
    out, _ = run_filter(planes, abs_, TemporalSettings(strength=0))
    for o, a in zip(out, abs_, strict=True):
        np.testing.assert_array_equal(o, a)


def test_a_cut_frame_is_its_own_prediction_and_no_colour_crosses_the_cut():
    planes = pan(5, 12) + pan(6, 12)
    abs_ = [np.full((HEIGHT, WIDTH, 2), (40.0, 10.0), np.float32) for _ in range(12)]
    abs_ += [np.full((HEIGHT, WIDTH, 2), (-30.0, -20.0), np.float32) for _ in range(12)]
    abs_ = [ab + j for ab, j in zip(abs_, flicker_ab(24, amount=3.0), strict=True)]
    abs_ = [ab - np.array([20.0, 30.0], np.float32) for ab in abs_]  # flicker around 0
    out, cuts = run_filter(planes, abs_)
    assert cuts == [12]
    np.testing.assert_array_equal(out[12], abs_[12])
    assert np.abs(out[11].mean(axis=(0, 1)) - abs_[11].mean(axis=(0, 1))).max() < 6
    assert out[11].mean(axis=(0, 1))[0] > 25  # the last frame of shot one saw none of shot two
    assert out[13].mean(axis=(0, 1))[0] < -15  # the second frame of shot two saw none of one


# --- shot cuts -------------------------------------------------------------------------------


def detect(planes: list[np.ndarray]) -> list[int]:
    return find_cuts(planes, FlowEstimator("medium"))


def test_cuts_are_found():
    planes = pan(10, 8) + pan(11, 6, step=(-1, 2)) + pan(12, 8, step=(0, 0))
    assert detect(planes) == [8, 14]


def test_a_cut_between_shots_of_similar_brightness_is_found():
    one, two = pan(13, 8), pan(14, 8)
    two = [(t - t.mean()) / t.std() * one[0].std() + one[0].mean() for t in two]
    assert detect(one + two) == [8]


def test_a_fade_through_black_is_not_a_cut():
    gains = [1.0, 0.8, 0.6, 0.4, 0.2, 0.05, 0.01, 0.0, 0.01, 0.05, 0.2, 0.4, 0.6, 0.8, 1.0]
    planes = [frame * gain for frame, gain in zip(pan(15, len(gains)), gains, strict=True)]
    assert detect(planes) == []


def test_a_flash_is_not_a_cut():
    planes = pan(16, 16)
    planes[7] = np.clip(planes[7] * 1.6 + 30, 0, 100)  # a blast, blown-out highlights
    planes[12] = np.clip(planes[12] * 1.6 + 30, 0, 100)  # two frames long
    planes[13] = np.clip(planes[13] * 1.5 + 25, 0, 100)
    assert detect(planes) == []


def test_film_flicker_is_not_a_cut():
    rng = np.random.default_rng(3)
    planes = [
        np.clip(frame * rng.uniform(0.8, 1.2) + rng.uniform(-8, 8), 0, 100) for frame in pan(17, 24)
    ]
    assert detect(planes) == []


def test_the_detector_decides_with_a_bounded_delay():
    detector = CutDetector(FlowEstimator("medium"))
    planes = pan(18, 6) + pan(19, 6)
    seen: list[int] = []
    for index, plane in enumerate(planes):
        detector.push(index, plane)
        while detector.decided:
            seen.append(detector.decided.popleft()[0])
        assert index - len(seen) < detector.settings.flash_span + 1
    detector.finish()
    seen += [i for i, _ in detector.decided]
    assert seen == list(range(12))


# --- the stage, in the pipeline --------------------------------------------------------------


def colorized(planes: list[np.ndarray], abs_: list[np.ndarray]) -> list[ColorizedFrame]:
    return [
        ColorizedFrame(i, 1000 + 512 * i, cv2.resize(p, (2 * WIDTH, 2 * HEIGHT)), ab, p)
        for i, (p, ab) in enumerate(zip(planes, abs_, strict=True))
    ]


def test_stage_keeps_order_timestamps_and_packets():
    frames = colorized(pan(20, 6), flicker_ab(6))
    marker_a, marker_b = CopiedPackets(["a"]), CopiedPackets(["b"])
    items = [frames[0], marker_a, *frames[1:4], marker_b, *frames[4:]]
    out = list(smooth_stage(items, TemporalSettings()))
    assert [type(i).__name__ for i in out] == [type(i).__name__ for i in items]
    assert out[1] is marker_a and out[5] is marker_b
    smoothed = [i for i in out if isinstance(i, ColorizedFrame)]
    assert [(f.index, f.pts) for f in smoothed] == [(f.index, f.pts) for f in frames]
    assert all(s.luminance is f.luminance for s, f in zip(smoothed, frames, strict=True))
    assert changes([f.ab for f in smoothed]).max() < changes([f.ab for f in frames]).max()


def test_colorize_stage_carries_the_render_size_luminance():
    class Grey:
        name, device = "grey", "cpu"

        def infer(self, batch: np.ndarray) -> np.ndarray:
            return np.zeros((batch.shape[0], 2, *batch.shape[2:]), np.float32)

    lum = pan(21, 1)[0]
    out = list(colorize_stage([DecodedFrame(0, 0, lum)], Grey(), 64, 4))
    small = out[0].render_luminance
    assert small is not None and small.shape == out[0].ab.shape[:2] == (64, 96)
    np.testing.assert_allclose(small, lum, atol=1e-4)  # 96x64 is its own render size


def test_chunked_output_equals_one_pass_at_the_seam():
    """Chunks colourised apart join without a seam: each reads warm-up frames before it (state
    only) and the filter's look-ahead past its end."""
    count, seam = 48, 24
    planes = pan(22, count, step=(1, 1))
    abs_ = flicker_ab(count, amount=10.0)
    frames = colorized(planes, abs_)
    whole = {f.index: f.ab for f in smooth_stage(frames, TemporalSettings())}

    def chunk(first: int, end: int, warmup: int) -> dict[int, np.ndarray]:
        start, stop = chunk_reads(first, end, warmup)
        out = smooth_stage(frames[start:stop], TemporalSettings(), first, end)
        return {f.index: f.ab for f in out}

    joined = {**chunk(0, seam, 16), **chunk(seam, count, 16)}
    assert sorted(joined) == list(range(count))
    worst = max(np.abs(joined[i] - whole[i]).max() for i in range(count))
    assert worst < 0.05
    cold = chunk(seam, count, 0)  # no warm-up: the seam shows
    assert np.abs(cold[seam] - whole[seam]).max() > 20 * max(worst, 1e-3)


def test_temporal_options_are_checked():
    assert RunOptions().temporal and RunOptions().temporal_strength == 1.0
    with pytest.raises(VidcolorError, match="temporal strength"):
        RunOptions(temporal_strength=-1)
    with pytest.raises(VidcolorError, match="warm-up"):
        RunOptions(temporal_warmup=-1)
