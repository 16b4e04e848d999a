"""Shot-cut detection on luminance, made for a streamed film.

A cut is a frame that the previous one cannot explain, even after motion compensation. Each
frame is compared with the previous one warped onto it by optical flow, through the normalised
cross-correlation of small, blurred copies: a correlation does not change when the whole picture
gets brighter or darker, so fades, exposure breathing and the flicker of old prints do not look
like cuts, and motion compensation keeps pans and moving subjects similar. What remains is
judged against the shot's own recent level (grainy, shaky footage scores higher throughout) and
then checked against the frames after it: if the frame after a candidate matches the frame
before it again, the candidate was a flash or a damaged frame, not a new shot. Frames with
almost no contrast (the black between a fade-out and a fade-in) are never called cuts: they hold
nothing to compare.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from vidcolor.temporal.flow import warp

# The comparison's scale: small copies this many pixels on their long side, lightly blurred,
# so grain, compression noise and sub-pixel flow errors average out.
ANALYSIS_SIDE = 64


@dataclass(frozen=True)
class CutSettings:
    # A cut's dissimilarity (1 - correlation of the motion-compensated pair) is at least this...
    threshold: float = 0.1
    # ...and at least this many times the shot's recent median (noisy shots score higher).
    ratio: float = 6.0
    recent: int = 10  # frames of the current shot that set its level
    # Below this standard deviation of L (0..100) a frame is blank: no cut is called on it.
    min_contrast: float = 2.0
    # Frames after a candidate compared with the frame before it (flash and glitch check).
    flash_span: int = 2


def analysis_plane(lum: np.ndarray) -> np.ndarray:
    """A small, blurred copy of an L plane on which frames are compared."""
    height, width = lum.shape
    scale = min(1.0, ANALYSIS_SIDE / max(height, width))
    size = (max(8, round(width * scale)), max(8, round(height * scale)))
    small = cv2.resize(lum, size, interpolation=cv2.INTER_AREA) if scale < 1 else lum
    return cv2.GaussianBlur(small, (0, 0), 1.0)


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Normalised cross-correlation of two planes, with a border of 1/16 left out (warping
    repeats the edge there). 1: same picture up to brightness and contrast."""
    my, mx = max(1, a.shape[0] // 16), max(1, a.shape[1] // 16)
    a = a[my:-my, mx:-mx].astype(np.float64)
    b = b[my:-my, mx:-mx].astype(np.float64)
    a -= a.mean()
    b -= b.mean()
    denominator = float(np.sqrt((a * a).sum() * (b * b).sum()))
    if denominator <= 1e-9:
        return 1.0 if float(np.abs(a).max() + np.abs(b).max()) < 1e-6 else 0.0
    return float((a * b).sum() / denominator)


def dissimilarity(current: np.ndarray, aligned_previous: np.ndarray) -> float:
    """1 - correlation of the current L plane and the previous one warped onto it (0..2)."""
    return 1.0 - correlation(analysis_plane(current), analysis_plane(aligned_previous))


def contrast(lum: np.ndarray) -> float:
    return float(analysis_plane(lum).std())


FlowFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


class CutDetector:
    """Streamed cut decisions: feed frames with ``push``, read ``decided`` ones in order.

    A frame's decision waits for ``flash_span`` later frames (or ``finish``). ``push`` takes
    the flow from the new frame back to the previous one when the caller has it (the temporal
    filter does), else computes it with ``flow``.
    """

    def __init__(self, flow: FlowFn, settings: CutSettings | None = None):
        self.flow = flow
        self.settings = settings or CutSettings()
        self.frames: deque[tuple[int, np.ndarray, float]] = deque()  # (index, L, score)
        self.recent: deque[float] = deque(maxlen=self.settings.recent)
        self.previous: tuple[np.ndarray, bool] | None = None  # last decided frame's L, blank
        self.after_flash = False
        self.decided: deque[tuple[int, bool]] = deque()

    def push(self, index: int, lum: np.ndarray, back_flow: np.ndarray | None = None) -> None:
        """Add frame ``index``; ``back_flow`` maps it onto the frame pushed before it."""
        score = 0.0
        if self.frames or self.previous is not None:
            before = self.frames[-1][1] if self.frames else self.previous[0]  # type: ignore[index]
            if before.shape != lum.shape:
                score = float("inf")  # a new geometry: nothing carries over
            else:
                flow = back_flow if back_flow is not None else self.flow(lum, before)
                score = dissimilarity(lum, warp(before, flow))
        self.frames.append((index, lum, score))
        while len(self.frames) > self.settings.flash_span:
            self._decide()

    def finish(self) -> None:
        """Decide the frames still waiting for later ones (the end of the film)."""
        while self.frames:
            self._decide()

    def _decide(self) -> None:
        index, lum, score = self.frames.popleft()
        blank = contrast(lum) < self.settings.min_contrast
        cut = flash = False
        if self.previous is not None:
            before, before_blank = self.previous
            if self.after_flash and before.shape == lum.shape:
                # the frame before was a flash: compare with the last frame before it
                score = dissimilarity(lum, warp(before, self.flow(lum, before)))
            if not blank and not before_blank and score >= self._level():
                flash = self._flash(before)
                cut = not flash
        if cut:
            self.recent.clear()
        elif not flash and self.previous is not None and np.isfinite(score):
            self.recent.append(score)
        if not flash:
            self.previous = (lum, blank)  # a flash is never what later frames compare with
        self.after_flash = flash
        self.decided.append((index, cut))

    def _level(self) -> float:
        s = self.settings
        if not self.recent:
            return s.threshold
        return max(s.threshold, s.ratio * float(np.median(self.recent)))

    def _flash(self, before: np.ndarray) -> bool:
        """Whether a frame after the candidate matches the frame before it again."""
        level = self._level()
        for _, later, _ in self.frames:  # the flash_span frames after the candidate
            if later.shape != before.shape:
                return False
            score = dissimilarity(later, warp(before, self.flow(later, before)))
            if score < 0.5 * level:
                return True
        return False


def find_cuts(
    planes: list[np.ndarray], flow: FlowFn, settings: CutSettings | None = None
) -> list[int]:
    """Indices of the frames that start a new shot (the first frame is not counted)."""
    detector = CutDetector(flow, settings)
    for index, plane in enumerate(planes):
        detector.push(index, plane)
    detector.finish()
    return [index for index, cut in detector.decided if cut]
