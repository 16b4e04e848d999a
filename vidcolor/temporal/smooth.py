"""The temporal filter: steady a film's predicted colour along its motion, reset at cuts.

Per-frame colourisers flicker: the same red dashboard comes out red, grey, red in three frames.
This filter replaces each frame's a,b with a per-pixel weighted mean of
  * the frame's own prediction (weight 1),
  * the previous *output* warped onto it by optical flow (weight ``past`` x confidence): a
    recursive, causal average that reaches many frames back, and
  * the next ``lookahead`` predictions, averaged backwards along the flow and warped onto it
    (weight ``future`` x confidence), so the filter is not only causal and colour changes are
    not late.
The confidence of a warp is the product of a forward-backward flow check (Sundaram et al. 2010:
where the two flows disagree the pixel was occluded or the flow is wrong) and a luminance check
(after warping, L must match up to the noise the frame shows elsewhere, once a global gain and
offset are allowed for flicker and fades), so occluded, new and fast-changing parts take their
own new prediction and colour does not smear across motion. At a shot cut the filter resets: the
first frame of a shot is exactly its prediction and nothing crosses the cut either way.

Everything works at the render size (the size colour is predicted at, about 160 px on the short
side), where flow is cheap. Memory is bounded: the filter holds ``lookahead`` + the cut
detector's few frames, whatever the film's length.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import cv2
import numpy as np

from vidcolor.temporal.cuts import CutDetector, CutSettings, contrast
from vidcolor.temporal.flow import FlowEstimator, fb_mismatch, remap, sampling_maps, warp

P = TypeVar("P")


@dataclass(frozen=True)
class TemporalSettings:
    """How strongly and how far the filter smooths; ``strength`` scales both weights."""

    strength: float = 1.0
    past: float = 3.0  # weight of the warped previous output, at full confidence
    future: float = 1.5  # weight of the averaged look-ahead, at full confidence
    lookahead: int = 3  # frames
    flow_preset: str = "fast"  # DIS: medium is ~15 % steadier on real clips, 4x the flow cost
    noise_floor: float = 0.7  # L units: the least noise a frame's residual is credited with
    occlusion_sigmas: float = 3.0  # residuals this many noise sigmas off mean 'not the same'
    cuts: CutSettings = field(default_factory=CutSettings)

    def __post_init__(self) -> None:
        if self.strength < 0:
            raise ValueError("temporal strength must be at least 0")
        if self.lookahead < 0:
            raise ValueError("look-ahead must be at least 0")

    @property
    def delay(self) -> int:
        """Frames the filter holds before it can give out the oldest one."""
        return self.lookahead + self.cuts.flash_span


def _photometric_fit(source: np.ndarray, target: np.ndarray) -> tuple[float, float]:
    """Gain and offset that map ``source``'s brightness onto ``target``'s, fitted robustly.

    Least squares on the pixels that already agree (residual within three robust sigmas of a
    first, offset-only guess), twice: an occluding object does not bend the fit.
    """
    a = source[::3, ::3].ravel().astype(np.float64)
    b = target[::3, ::3].ravel().astype(np.float64)
    gain, offset = 1.0, float(np.median(b - a))
    for _ in range(2):
        residual = b - (gain * a + offset)
        spread = 1.4826 * float(np.median(np.abs(residual - np.median(residual))))
        keep = np.abs(residual) <= max(3.0 * spread, 1.0)
        if keep.sum() < 16:
            break
        x, y = a[keep], b[keep]
        var = float(x.var())
        if var > 1e-6:
            gain = min(max(float(((x - x.mean()) * (y - y.mean())).mean() / var), 0.5), 2.0)
        offset = float(y.mean() - gain * x.mean())
    return gain, offset


def confidence(
    lum: np.ndarray,
    other: np.ndarray,
    flow: np.ndarray,
    back: np.ndarray,
    settings: TemporalSettings,
) -> np.ndarray:
    """How far ``warp(x_of_other, flow)`` can stand in for frame ``lum``'s x, per pixel (0..1).

    ``flow`` maps this frame onto ``other``; ``back`` is the flow the other way.
    """
    maps = sampling_maps(flow)
    mismatch, tolerance = fb_mismatch(flow, back, maps)
    trust = np.exp(-mismatch / tolerance)
    aligned = remap(other, maps)
    # Global photometric change (flicker, fades, exposure) is not an occlusion: fit it away,
    # robustly, so that the occluded part itself does not bend the fit.
    gain, offset = _photometric_fit(aligned, lum)
    residual = cv2.GaussianBlur(lum - (gain * aligned + offset), (0, 0), 1.0)
    noise = max(settings.noise_floor, 1.4826 * float(np.median(np.abs(residual[::2, ::2]))))
    scale = settings.occlusion_sigmas * noise
    trust *= np.exp(-0.5 * (residual / scale) ** 2)
    # Points that leave the picture have nothing to take.
    height, width = lum.shape
    map_x, map_y = maps
    trust[(map_x < -0.5) | (map_x > width - 0.5) | (map_y < -0.5) | (map_y > height - 0.5)] = 0.0
    return trust.astype(np.float32, copy=False)


@dataclass
class _Slot(Generic[P]):
    index: int
    payload: P
    lum: np.ndarray  # (h, w) L at render size
    ab: np.ndarray  # (h, w, 2) prediction
    blank: bool
    to_prev: np.ndarray | None = None  # flow onto the previous frame
    from_prev: np.ndarray | None = None  # confidence of warp(prev, to_prev)
    to_next: np.ndarray | None = None
    from_next: np.ndarray | None = None
    cut: bool | None = None  # None: not decided yet


class TemporalFilter(Generic[P]):
    """Streamed filter: ``push(index, lum, ab, payload)``, then ``ready()`` / ``finish()``.

    Results come out in order as (payload, smoothed ab, is_cut). ``payload`` is whatever the
    caller wants back with the frame (the pipeline's frame object).
    """

    def __init__(self, settings: TemporalSettings | None = None):
        self.settings = settings or TemporalSettings()
        self.flow = FlowEstimator(self.settings.flow_preset)
        self.cuts = CutDetector(self.flow, self.settings.cuts)
        self.window: deque[_Slot[P]] = deque()
        self.last_out: np.ndarray | None = None  # output ab of the frame given out last
        self.last_slot: _Slot[P] | None = None
        self.finished = False

    def push(self, index: int, lum: np.ndarray, ab: np.ndarray, payload: P) -> None:
        slot = _Slot(index, payload, lum.astype(np.float32), ab.astype(np.float32), False)
        slot.blank = contrast(slot.lum) < self.settings.cuts.min_contrast
        prev = self.window[-1] if self.window else self.last_slot
        back = None
        if prev is not None and prev.lum.shape == slot.lum.shape:
            back = self.flow(slot.lum, prev.lum)
            ahead = self.flow(prev.lum, slot.lum)
            slot.to_prev = back
            prev.to_next = ahead
            if not (slot.blank or prev.blank):  # no structure, no motion to trust
                slot.from_prev = confidence(slot.lum, prev.lum, back, ahead, self.settings)
                if self.settings.lookahead:
                    prev.from_next = confidence(prev.lum, slot.lum, ahead, back, self.settings)
        self.window.append(slot)
        self.cuts.push(index, slot.lum, back)
        self._take_decisions()

    def _take_decisions(self) -> None:
        by_index = {s.index: s for s in self.window}
        while self.cuts.decided:
            index, cut = self.cuts.decided.popleft()
            by_index[index].cut = cut

    def finish(self) -> None:
        self.cuts.finish()
        self._take_decisions()
        self.finished = True

    def ready(self) -> Iterator[tuple[P, np.ndarray, bool]]:
        """Give out every frame whose look-ahead is complete (all of them after ``finish``)."""
        while self.window:
            slot = self.window[0]
            if slot.cut is None:
                return
            ahead = list(self.window)[1 : 1 + self.settings.lookahead]
            if not self.finished and len(ahead) < self.settings.lookahead:
                return
            if any(s.cut is None for s in ahead):
                return
            self.window.popleft()
            out = self._smooth(slot, ahead)
            self.last_out, self.last_slot = out, slot
            slot.to_next = slot.from_next = None  # only the newest frame's flows are needed
            yield slot.payload, out, bool(slot.cut)

    def _smooth(self, slot: _Slot[P], ahead: list[_Slot[P]]) -> np.ndarray:
        s = self.settings
        start = slot.cut or self.last_out is None or slot.from_prev is None
        if start or s.strength == 0:
            return slot.ab
        total = slot.ab.copy()
        weight = np.ones(slot.ab.shape[:2], np.float32)
        past = (s.strength * s.past) * slot.from_prev
        total += past[..., None] * warp(self.last_out, slot.to_prev)
        weight += past
        shot: list[_Slot[P]] = []
        for later in ahead:
            if later.cut:
                break
            shot.append(later)
        if shot and slot.from_next is not None:
            future = shot[-1].ab  # averaged backwards along the flow, frame by frame
            for earlier in reversed(shot[:-1]):
                if earlier.from_next is None:
                    future = earlier.ab
                    continue
                c = ((s.strength * s.future) * earlier.from_next)[..., None]
                future = (earlier.ab + c * warp(future, earlier.to_next)) / (1 + c)
            c = (s.strength * s.future) * slot.from_next
            total += c[..., None] * warp(future, slot.to_next)
            weight += c
        return total / weight[..., None]
