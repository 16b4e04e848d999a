"""``vidcolor eval-video``: how steady a colourised film is, measured against a reference.

For every pair of consecutive frames, optical flow is computed once on the *reference* (the
source film, or the colour original) and each film is scored with it:
  * warp error (Lai et al. 2018) on RGB in 0..1, and the chroma warp error on Lab a,b only,
    which leaves the luminance's own warp error out and so isolates colour flicker;
  * colour consistency: how far the frame's mean a,b moves (mean and 95th percentile) and how
    far its whole a,b distribution moves (``vidcolor.metrics.ab_distribution_shift``);
  * when the reference is in colour, PSNR and CIEDE2000 of each frame against it.
Pairs across a shot cut of the reference are left out: a cut is not flicker. The reference is
scored too, as the level a real film reaches. All films are read in step, one frame at a time.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from skimage.color import deltaE_ciede2000

from vidcolor.color import lab_to_rgb, resize_plane
from vidcolor.errors import VidcolorError
from vidcolor.media.decode import DecodedFrame, VideoReader
from vidcolor.metrics import ab_distribution_shift, mean_ab_change, psnr, warp_error
from vidcolor.options import DEFAULT_MAX_PIXELS, DEFAULT_RENDER_SIZE
from vidcolor.temporal.cuts import CutDetector
from vidcolor.temporal.flow import FlowEstimator, non_occluded

# A reference whose mean Lab chroma is below this is black-and-white: no colour scores.
COLOUR_REFERENCE_CHROMA = 2.0


@dataclass
class VideoScores:
    """One film's figures (the reference's own, or a colourised film's)."""

    path: str
    frames: int
    pairs: int  # consecutive pairs scored (pairs across cuts left out)
    warp_error: float  # RGB 0..1, squared, summed over channels
    chroma_warp_error: float  # Lab a,b units squared
    ab_change_mean: float  # Lab units: movement of the frame's mean a,b
    ab_change_p95: float
    ab_shift: float  # Lab units: movement of the a,b distribution (mean over pairs)
    psnr: float | None = None  # against a colour reference
    ciede2000: float | None = None

    def to_json(self) -> dict[str, object]:
        return {
            k: (None if isinstance(v, float) and math.isnan(v) else v)
            for k, v in asdict(self).items()
        }


@dataclass
class VideoEvaluation:
    reference: VideoScores
    videos: list[VideoScores]
    cuts: list[int]  # frames of the reference that start a new shot
    colour_reference: bool
    size: tuple[int, int]  # (width, height) the films were compared at


@dataclass
class _Tally:
    path: Path
    warp: list[float] = field(default_factory=list)
    chroma: list[float] = field(default_factory=list)
    change: list[float] = field(default_factory=list)
    shift: list[float] = field(default_factory=list)
    psnr: list[float] = field(default_factory=list)
    ciede: list[float] = field(default_factory=list)
    previous: tuple[np.ndarray, np.ndarray] | None = None  # (rgb, ab) of the last frame

    def scores(self, frames: int, keep: list[bool], colour: bool) -> VideoScores:
        def mean(values: list[float]) -> float:
            kept = [v for v, k in zip(values, keep, strict=True) if k and not math.isnan(v)]
            return float(np.mean(kept)) if kept else float("nan")

        kept_change = [v for v, k in zip(self.change, keep, strict=True) if k]
        return VideoScores(
            path=str(self.path),
            frames=frames,
            pairs=sum(keep),
            warp_error=mean(self.warp),
            chroma_warp_error=mean(self.chroma),
            ab_change_mean=float(np.mean(kept_change)) if kept_change else float("nan"),
            ab_change_p95=float(np.percentile(kept_change, 95)) if kept_change else float("nan"),
            ab_shift=mean(self.shift),
            psnr=float(np.mean(self.psnr)) if colour and self.psnr else None,
            ciede2000=float(np.mean(self.ciede)) if colour and self.ciede else None,
        )


def _frames(reader: VideoReader) -> Iterator[DecodedFrame]:
    for item in reader.frames():
        if isinstance(item, DecodedFrame):
            yield item


def _at(frame: DecodedFrame, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(L, ab) of a frame at ``size`` (w, h)."""
    assert frame.ab is not None
    return resize_plane(frame.luminance, *size), resize_plane(frame.ab, *size)


def evaluate_videos(
    reference: Path,
    videos: list[Path],
    *,
    size: int | None = None,
    flow_preset: str = "medium",
    max_pixels: int = DEFAULT_MAX_PIXELS,
    on_frame: Callable[[], None] | None = None,
) -> VideoEvaluation:
    """Score each of ``videos`` against ``reference`` (same frames, any size).

    ``size`` is the short side the films are compared at (default: the reference's own).
    """
    flow = FlowEstimator(flow_preset)
    cut_flow = FlowEstimator("medium")
    cuts = CutDetector(cut_flow)
    readers = [VideoReader(reference, max_pixels=max_pixels, chroma=True)]
    try:
        for path in videos:
            readers.append(VideoReader(path, max_pixels=max_pixels, chroma=True))
        info = readers[0].info
        if size is None or size >= min(info.width, info.height):
            shape = (info.width, info.height)
        else:
            scale = size / min(info.width, info.height)
            shape = (max(1, round(info.width * scale)), max(1, round(info.height * scale)))
        cut_scale = min(1.0, DEFAULT_RENDER_SIZE / min(shape))
        cut_shape = (max(8, round(shape[0] * cut_scale)), max(8, round(shape[1] * cut_scale)))
        tallies = [_Tally(reader.path) for reader in readers]
        streams = [_frames(reader) for reader in readers]
        chroma: list[float] = []
        previous_lum: np.ndarray | None = None
        count = 0
        while True:
            frames = [next(stream, None) for stream in streams]
            if all(f is None for f in frames):
                break
            for reader, frame in zip(readers, frames, strict=True):
                if frame is None:
                    raise VidcolorError(
                        f"{reader.path}: ends after {count} frames, "
                        f"but {_longest(readers, frames)} goes on"
                    )
            planes = [_at(frame, shape) for frame in frames]  # type: ignore[arg-type]
            lum, ref_ab = planes[0]
            chroma.append(float(np.hypot(ref_ab[..., 0], ref_ab[..., 1]).mean()))
            cuts.push(count, resize_plane(lum, *cut_shape))
            if previous_lum is not None:
                forward = flow(previous_lum, lum)
                valid = non_occluded(forward, flow(lum, previous_lum))
            ref_lab = np.dstack(planes[0])
            ref_rgb = lab_to_rgb(ref_lab)
            for index, (tally, (frame_lum, ab)) in enumerate(zip(tallies, planes, strict=True)):
                lab = np.dstack([frame_lum, ab])
                rgb = ref_rgb if index == 0 else lab_to_rgb(lab)
                if index:
                    tally.psnr.append(psnr(ref_rgb, rgb))
                    # every other pixel each way: the same mean, a quarter of the work
                    tally.ciede.append(
                        float(deltaE_ciede2000(ref_lab[::2, ::2], lab[::2, ::2]).mean())
                    )
                if tally.previous is not None:
                    before_rgb, before_ab = tally.previous
                    tally.warp.append(warp_error(before_rgb, rgb, forward, valid))
                    tally.chroma.append(warp_error(before_ab, ab, forward, valid))
                    tally.change.append(mean_ab_change(before_ab, ab))
                    tally.shift.append(ab_distribution_shift(before_ab[::2, ::2], ab[::2, ::2]))
                tally.previous = (rgb, ab)
            previous_lum = lum
            count += 1
            if on_frame is not None:
                on_frame()
    finally:
        for reader in readers:
            reader.close()
    if count < 2:
        raise VidcolorError(f"{reference}: needs at least 2 frames to measure consistency")
    cuts.finish()
    cut_frames = [index for index, cut in cuts.decided if cut]
    keep = [index + 1 not in set(cut_frames) for index in range(count - 1)]
    colour = float(np.mean(chroma)) >= COLOUR_REFERENCE_CHROMA
    scores = [tally.scores(count, keep, colour) for tally in tallies]
    scores[0].psnr = scores[0].ciede2000 = None
    return VideoEvaluation(scores[0], scores[1:], cut_frames, colour, shape)


def _longest(readers: list[VideoReader], frames: list[DecodedFrame | None]) -> str:
    for reader, frame in zip(readers, frames, strict=True):
        if frame is not None:
            return str(reader.path)
    return "another film"
