"""Decode stage: a film's frames as full-resolution CIE L, with the packets to copy beside them.

Audio and subtitle packets are demuxed in the same pass and travel in order with the frames, so
the encoder can mux them as it goes: one pass over the file, constant memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from vidcolor.color import luminance
from vidcolor.errors import VidcolorError

COPIED_STREAM_TYPES = ("audio", "subtitle")


@dataclass
class VideoInfo:
    """What the encoder needs to reproduce the film's geometry and timing."""

    width: int
    height: int
    time_base: Fraction
    average_rate: Fraction | None
    frame_count: int  # from the container header; 0 when unknown
    rotation: float  # degrees, counter-clockwise, from the display matrix
    sample_aspect_ratio: Fraction | None
    bit_depth: int
    codec: str
    pix_fmt: str
    color_range: int
    colorspace: int
    color_primaries: int
    color_trc: int
    end_pts: int | None = None  # where the last frame ends (start + stream duration), if known

    @property
    def nominal_rate(self) -> Fraction:
        """The average rate, or 25 fps when the container does not say."""
        return self.average_rate or Fraction(25)

    @property
    def frame_step(self) -> int:
        """One frame's nominal duration in time-base ticks (for frames without timing)."""
        return max(1, round(1 / (self.nominal_rate * self.time_base)))


@dataclass
class DecodedFrame:
    index: int
    pts: int  # in VideoInfo.time_base
    luminance: np.ndarray  # (H, W) float32 CIE L of the full-resolution frame


@dataclass
class CopiedPackets:
    """Packets of audio/subtitle streams, muxed unchanged in decode order."""

    packets: list[av.Packet] = field(default_factory=list)


DecodedItem = DecodedFrame | CopiedPackets


def _bit_depth(stream: av.video.stream.VideoStream) -> int:
    fmt = stream.codec_context.format
    if fmt is None:
        return 8
    return max((c.bits for c in fmt.components), default=8)


def _rotation(first: av.VideoFrame) -> float:
    """PyAV exposes the display matrix on decoded frames, not on the stream."""
    return float(first.rotation or 0)


class VideoReader:
    """Open a film and iterate its frames from ``start_frame`` (seeking to the nearest keyframe)."""

    def __init__(self, path: Path, start_frame: int = 0):
        self.path = path
        self.start_frame = start_frame
        self._open()
        self._first = self._peek_first_frame()
        self.info = self._make_info()
        self._fresh = False  # the peek consumed packets: reopen before iterating

    def _open(self) -> None:
        try:
            self.container = av.open(str(self.path), metadata_errors="ignore")
        except (av.FFmpegError, OSError) as exc:
            raise VidcolorError(f"{self.path}: cannot open video ({_reason(exc)})") from exc
        if not self.container.streams.video:
            self.container.close()
            raise VidcolorError(f"{self.path}: has no video stream")
        self.stream = self.container.streams.video[0]
        self.stream.thread_type = "AUTO"
        self.copied_streams = [s for s in self.container.streams if s.type in COPIED_STREAM_TYPES]
        self._fresh = True

    def _peek_first_frame(self) -> av.VideoFrame | None:
        """Decode one frame up front: it proves the file decodes and carries the rotation."""
        try:
            for frame in self.container.decode(self.stream):
                return frame
        except (av.FFmpegError, OSError) as exc:
            raise VidcolorError(f"{self.path}: cannot decode video ({_reason(exc)})") from exc
        return None

    def _make_info(self) -> VideoInfo:
        if self._first is None:
            raise VidcolorError(f"{self.path}: video stream holds no decodable frame")
        ctx = self.stream.codec_context
        first = self._first
        return VideoInfo(
            width=first.width,
            height=first.height,
            time_base=self.stream.time_base or Fraction(1, 90000),
            average_rate=self.stream.average_rate,
            frame_count=self.stream.frames,
            rotation=_rotation(first),
            sample_aspect_ratio=self.stream.sample_aspect_ratio or ctx.sample_aspect_ratio,
            bit_depth=_bit_depth(self.stream),
            codec=ctx.name,
            pix_fmt=first.format.name,
            color_range=first.color_range,
            colorspace=first.colorspace,
            color_primaries=first.color_primaries,
            color_trc=first.color_trc,
            end_pts=_end_pts(self.stream),
        )

    def close(self) -> None:
        self.container.close()

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _start_pts(self) -> int | None:
        """pts of ``start_frame``, whatever the frame rate; None means 'from the beginning'.

        A demux-only pass (no decoding) lists the video packets' pts: the k-th smallest is the
        pts of frame k, exact for variable rates and films whose first pts is not 0.
        """
        if self.start_frame <= 0:
            return None
        try:
            with av.open(str(self.path), metadata_errors="ignore") as container:
                stream = container.streams.video[0]
                stamps = sorted(
                    packet.pts
                    for packet in container.demux(stream)
                    if packet.pts is not None and packet.size > 0 and not packet.is_discard
                )
        except (av.FFmpegError, OSError) as exc:
            raise VidcolorError(f"{self.path}: cannot read video ({_reason(exc)})") from exc
        if stamps:
            if self.start_frame >= len(stamps):
                return stamps[-1] + 1  # past the last frame: nothing to decode
            return stamps[self.start_frame]
        rate = self.info.average_rate
        if not rate:
            raise VidcolorError(f"{self.path}: frame rate unknown, cannot start at a frame")
        offset = self.stream.start_time or 0  # estimate, minus half a frame for rounding
        return offset + round((self.start_frame - Fraction(1, 2)) / rate / self.info.time_base)

    def frames(self) -> Iterator[DecodedItem]:
        """Yield decoded frames (as L) and copied packets, in file order."""
        target = self._start_pts()
        if not self._fresh:
            self.container.close()
            self._open()
        self._fresh = False
        if target is not None:
            self.container.seek(target, stream=self.stream, backward=True, any_frame=False)
        index = max(self.start_frame, 0)
        pending = CopiedPackets()
        depth_fmt = "rgb48le" if self.info.bit_depth > 8 else "rgb24"
        default_step = self.info.frame_step
        last_pts = -default_step
        discarded = 0
        try:
            for packet in self.container.demux(self.stream, *self.copied_streams):
                if packet.stream.type != "video":
                    if packet.dts is not None and packet.size > 0 and target is None:
                        pending.packets.append(packet)
                    continue
                if packet.is_discard and packet.size > 0:
                    discarded += 1  # before the edit list's start: decoded, never shown
                for frame in packet.decode():
                    pts = frame.pts if frame.pts is not None else last_pts + default_step
                    last_pts = pts
                    if target is not None and pts < target:
                        continue
                    if pending.packets:
                        yield pending
                        pending = CopiedPackets()
                    rgb = frame.to_ndarray(format=depth_fmt)
                    yield DecodedFrame(index, pts, luminance(rgb))
                    index += 1
        except av.FFmpegError as exc:
            raise VidcolorError(
                f"{self.path}: video is corrupt at frame {index} ({_reason(exc)})"
            ) from exc
        if pending.packets:
            yield pending
        expected = self.info.frame_count - discarded
        if target is None and self.info.frame_count and index < expected:
            raise VidcolorError(
                f"{self.path}: video is truncated or damaged: decoded {index} "
                f"of the {expected} frames its header lists"
            )


def _end_pts(stream: av.video.stream.VideoStream) -> int | None:
    if not stream.duration or stream.duration <= 0:
        return None
    return (stream.start_time or 0) + stream.duration


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return text.split(": '")[0].strip() or type(exc).__name__
