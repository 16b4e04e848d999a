"""A film's frame index: every frame's pts and which frames are keyframes, from one demux pass.

Seeking to frame k needs the pts of frame k, and splitting a film into chunks needs its
keyframes and frame count. Both come from listing the video packets without decoding them
(a few percent of the cost of decoding). The index is built once per film and handed to every
reader of one of its chunks, so a film in 40 chunks is not demuxed 40 times.

A film whose timing needs mending (joined recordings whose clock jumps back, AVI null frames,
packets without timestamps, frames before an edit list's start), or whose container cannot
seek exactly, is indexed as not ``splittable``: such films are read in one pass.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av

from vidcolor.errors import VidcolorError
from vidcolor.media.probe import is_cover_art


@dataclass(frozen=True)
class FilmIndex:
    """The video stream's frames in display order (small: about 8 bytes a frame)."""

    frame_pts: tuple[int, ...]  # sorted: frame k is shown at frame_pts[k]
    keyframes: tuple[int, ...]  # frame numbers that decoding can start from
    time_base: Fraction
    end_pts: int | None  # where the last frame ends, when the container says
    splittable: bool  # timing needs no mending: chunks read alone equal one pass

    @property
    def frame_count(self) -> int:
        return len(self.frame_pts)

    def pts_of(self, frame: int) -> int | None:
        """pts of ``frame``; None past the end."""
        return self.frame_pts[frame] if 0 <= frame < len(self.frame_pts) else None

    def nearest_pts(self, pts: Fraction | int) -> int:
        """The frame pts nearest ``pts`` (a time rounded by a coarser time base)."""
        at = bisect.bisect_left(self.frame_pts, pts)
        near = self.frame_pts[max(0, at - 1) : at + 1]
        return min(near, key=lambda stamp: abs(stamp - pts))

    def keyframes_between(self, low: int, high: int) -> tuple[int, ...]:
        """Keyframes ``low..high`` (inclusive)."""
        start = bisect.bisect_left(self.keyframes, low)
        return self.keyframes[start : bisect.bisect_right(self.keyframes, high)]

    def seconds(self, frames: int) -> float:
        """Rough length of ``frames`` frames at the film's average spacing."""
        if len(self.frame_pts) < 2:
            return 0.0
        span = (self.frame_pts[-1] - self.frame_pts[0]) * self.time_base
        return float(span * frames / (len(self.frame_pts) - 1))


def build_film_index(path: Path) -> FilmIndex:
    """List the film's video packets: pts, keyframe flags, and whether timing is clean."""
    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            films = [s for s in container.streams.video if not is_cover_art(s)]
            if not films:
                raise VidcolorError(f"{path}: has no video stream")
            stream = films[0]
            stamps: list[int] = []
            key_stamps: list[int] = []
            splittable = True
            last_dts: int | None = None
            for packet in container.demux(stream):
                if packet.size == 0:
                    if packet.pts is not None or packet.dts is not None:
                        splittable = False  # an AVI null frame: "show the last one again"
                    continue
                if packet.pts is None or packet.is_discard:
                    splittable = False
                    continue
                if packet.dts is not None:
                    if last_dts is not None and packet.dts <= last_dts:
                        splittable = False  # the clock jumps back (joined recordings)
                    last_dts = packet.dts
                stamps.append(packet.pts)
                if packet.is_keyframe:
                    key_stamps.append(packet.pts)
            if not _seeks_exactly(container.format.name):
                splittable = False
            time_base = stream.time_base or Fraction(1, 90000)
            end_pts = None
            if stream.duration and stream.duration > 0:
                end_pts = (stream.start_time or 0) + stream.duration
    except (av.FFmpegError, OSError) as exc:
        raise VidcolorError(f"{path}: cannot read video ({exc})") from exc
    frame_pts = sorted(stamps)
    if len(set(frame_pts)) != len(frame_pts):
        splittable = False  # two frames at one time: only the decode stage can order them
    position = {pts: k for k, pts in enumerate(frame_pts)}
    keyframes = sorted({position[pts] for pts in key_stamps}) or [0]
    if keyframes[0] != 0:
        splittable = False  # the first frames need a keyframe that is not there
    return FilmIndex(tuple(frame_pts), tuple(keyframes), time_base, end_pts, splittable)


# Containers whose index lets a reader seek to a keyframe by pts and decode on from there
# (MP4/MOV sample tables, Matroska cues). Transport and program streams, AVI and the rest
# are read from the start, in one pass.
_EXACT_SEEK = ("mov", "mp4", "matroska", "webm")


def _seeks_exactly(format_name: str) -> bool:
    return any(name in _EXACT_SEEK for name in format_name.split(","))
