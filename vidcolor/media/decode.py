"""Decode stage: a film's frames as full-resolution CIE L, with the packets to copy beside them.

Audio and subtitle packets are demuxed in the same pass and travel in order with the frames, so
the encoder can mux them as it goes: one pass over the file, constant memory.

Films from the wild are mended here, where the source is known, so the encoder only ever sees
frames of one size with rising timestamps: AVI null frames are not mistaken for missing ones,
frames that change size are scaled to the first one's, and timestamps that jump back (joined
recordings) are shifted so that time runs on. A film that ends before its header says is an
error (or, on request, a warning), and so is a frame size too big to hold.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import av
import numpy as np

from vidcolor.color import as_float_rgb, luminance, rgb_to_lab
from vidcolor.errors import VidcolorError
from vidcolor.media.probe import is_cover_art
from vidcolor.options import DEFAULT_MAX_PIXELS

if TYPE_CHECKING:
    from vidcolor.media.index import FilmIndex

log = logging.getLogger(__name__)

COPIED_STREAM_TYPES = ("audio", "subtitle")
# A packet this many seconds before the last one of its stream starts a new timeline (ffmpeg's
# discontinuity threshold); a smaller step back is jitter and is mended by one tick.
JUMP_BACK = Fraction(1, 10)
# Matroska/WebM give a duration the muxer measured after the last packet; a film whose packets
# stop this much earlier (seconds, or two frames when longer) has lost its end.
END_TOLERANCE = Fraction(1, 4)
# Transport stream packet sizes with the offset of their 0x47 sync byte: plain TS, Blu-ray
# M2TS (4-byte timestamp first) and TS with Reed-Solomon parity.
_TS_PACKETS = ((188, 0), (192, 4), (204, 0))
_INT_MAX = 2**31 - 1


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
    ab: np.ndarray | None = None  # (H, W, 2) float32 a,b, only from a reader asked for chroma


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
    """Open a film and iterate its frames ``[start_frame, end_frame)`` (seeking to the keyframe
    before ``start_frame``; ``index``, the film's frame index, saves a demux pass to find it).

    ``max_pixels`` bounds the frame size (a tiny file can declare gigabytes a frame);
    ``allow_truncated`` turns "the film ends before its header says" into a logged warning;
    ``chroma`` keeps each frame's a,b beside its L (to steady a film that is already in colour);
    ``threads`` caps the decoder's threads (default: FFmpeg's choice).
    """

    def __init__(
        self,
        path: Path,
        start_frame: int = 0,
        *,
        end_frame: int | None = None,
        index: FilmIndex | None = None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        allow_truncated: bool = False,
        chroma: bool = False,
        threads: int | None = None,
    ):
        self.path = path
        self.threads = threads
        self.chroma = chroma
        self.start_frame = start_frame
        self.end_frame = end_frame
        self.index = index
        self.max_pixels = max_pixels
        self.allow_truncated = allow_truncated
        self._open()
        try:
            self._null_frames = _avi_null_frames(self.path, self.container, self.stream)
            self._first = self._peek_first_frame()
            self.info = self._make_info()
            self._check_transport_tail()
        except BaseException:
            self.container.close()
            raise
        self._fresh = False  # the peek consumed packets: reopen before iterating

    def _open(self) -> None:
        try:
            self.container = av.open(str(self.path), metadata_errors="ignore")
        except (av.FFmpegError, OSError) as exc:
            raise VidcolorError(f"{self.path}: cannot open video ({_reason(exc)})") from exc
        films = [s for s in self.container.streams.video if not is_cover_art(s)]
        if not films:
            only_cover = bool(self.container.streams.video)
            self.container.close()
            detail = " (only cover art)" if only_cover else ""
            raise VidcolorError(f"{self.path}: has no video stream{detail}")
        self.stream = films[0]
        try:
            self._check_size(self.stream.codec_context.width, self.stream.codec_context.height)
        except VidcolorError:
            self.container.close()
            raise
        self.stream.thread_type = "AUTO"
        if self.threads:
            self.stream.codec_context.thread_count = self.threads
        # Later frames may change size: the decoder refuses to allocate ones far over the limit
        # (it counts padded sizes, hence the room), the loop below the rest.
        limit = min(2 * self.max_pixels + 65536, _INT_MAX)
        self.stream.codec_context.options = {"max_pixels": str(limit)}
        self.copied_streams = [s for s in self.container.streams if s.type in COPIED_STREAM_TYPES]
        self._fresh = True

    def _check_size(self, width: int, height: int) -> None:
        """Refuse a frame size before any frame is decoded: each one is held several times."""
        if width * height > self.max_pixels:
            raise VidcolorError(
                f"{self.path}: {width}x{height} frames are more than the limit of "
                f"{self.max_pixels} pixels (use --max-pixels to raise it)"
            )

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
        self._check_size(first.width, first.height)
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

    def _check_transport_tail(self) -> None:
        """A transport stream has no frame count or trustworthy duration: a file that ends
        inside a transport packet was cut short (copying stopped, a recording died)."""
        if self.container.format.name != "mpegts":
            return
        size = _cut_transport_packet(self.path)
        if size is not None:
            self._truncated(f"it ends inside a {size}-byte transport packet")

    def _truncated(self, detail: str) -> None:
        message = f"{self.path}: video is truncated or damaged: {detail}"
        if self.allow_truncated:
            log.warning("%s; colourising the frames that are there", message)
            return
        raise VidcolorError(f"{message} (--allow-truncated accepts the frames that are there)")

    def close(self) -> None:
        self.container.close()

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _start_pts(self) -> int | None:
        """pts of ``start_frame``, whatever the frame rate; None means 'from the beginning'.

        The film index (one demux-only pass, no decoding) lists the frames' pts in display
        order: exact for variable rates and films whose first pts is not 0.
        """
        if self.start_frame <= 0:
            return None
        if self.index is None:
            from vidcolor.media.index import build_film_index

            self.index = build_film_index(self.path)
        stamps = self.index.frame_pts
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
        info = self.info
        index = max(self.start_frame, 0)
        end_frame = self.end_frame
        if end_frame is not None and index >= end_frame:
            return
        start_seconds = None if target is None else target * info.time_base
        pending = CopiedPackets()
        depth_fmt = "rgb48le" if info.bit_depth > 8 else "rgb24"
        copied = {s.index for s in self.copied_streams}
        video = self.stream.index
        timeline = _Timeline(self.path, self.stream, info.frame_step)
        resized = last_corrupt = False
        discarded = nulls = 0
        stream_end = Fraction(0)  # seconds: where the demuxed packets end, before any repair
        try:
            for packet in self.container.demux():
                if packet.size == 0 and packet.pts is None and packet.dts is None:
                    if packet.stream.index != video:
                        continue  # PyAV's end-of-stream packet; the video one flushes below
                elif packet.pts is not None and packet.time_base:
                    end = (packet.pts + (packet.duration or 0)) * packet.time_base
                    stream_end = max(stream_end, end)
                if packet.stream.index in copied:
                    timeline.shift_packet(packet, copied=True)
                    wanted = start_seconds is None or _starts_by(packet, start_seconds)
                    if packet.dts is not None and packet.size > 0 and wanted:
                        pending.packets.append(packet)
                    continue
                if packet.stream.index != video:
                    continue  # other video or data streams: only their timing counts
                if packet.size == 0 and (packet.pts is not None or packet.dts is not None):
                    # A null frame (AVI "drop"): the previous picture shows on; decoding it
                    # would end the stream, and it holds no frame to wait for.
                    nulls += 1
                    continue
                if packet.is_discard and packet.size > 0:
                    discarded += 1  # before the edit list's start: decoded, never shown
                timeline.shift_packet(packet, copied=False)
                for frame in packet.decode():
                    pts = timeline.frame_pts(frame)
                    if target is not None and pts < target:
                        continue
                    if pending.packets:
                        yield pending
                        pending = CopiedPackets()
                    last_corrupt = frame.is_corrupt
                    if (frame.width, frame.height) != (info.width, info.height):
                        self._check_size(frame.width, frame.height)
                        if not resized:
                            resized = True
                            log.warning(
                                "%s: frame %d is %dx%d, not %dx%d like the first: frames of "
                                "another size are scaled to %dx%d",
                                self.path,
                                index,
                                frame.width,
                                frame.height,
                                info.width,
                                info.height,
                                info.width,
                                info.height,
                            )
                        frame = frame.reformat(width=info.width, height=info.height)
                    rgb = frame.to_ndarray(format=depth_fmt)
                    if self.chroma:
                        lab = rgb_to_lab(as_float_rgb(rgb))
                        yield DecodedFrame(index, pts, lab[:, :, 0].copy(), lab[:, :, 1:].copy())
                    else:
                        yield DecodedFrame(index, pts, luminance(rgb))
                    index += 1
                    if end_frame is not None and index >= end_frame:
                        return  # a chunk's last frame: the rest of the film is another's
        except av.FFmpegError as exc:
            raise VidcolorError(
                f"{self.path}: video is corrupt at frame {index} ({_reason(exc)})"
            ) from exc
        if pending.packets:
            yield pending
        unshown = discarded + max(nulls, self._null_frames)
        self._check_end(index, unshown, stream_end, target, last_corrupt)

    def copied_packets(self) -> Iterator[av.Packet]:
        """The audio and subtitle packets alone, timed as ``frames()`` gives them, decoding
        nothing: to mux the source's sound into a film joined from chunks."""
        with av.open(str(self.path), metadata_errors="ignore") as container:
            copied = {s.index for s in self.copied_streams}
            video = self.stream.index
            timeline = _Timeline(self.path, container.streams[video], self.info.frame_step)
            try:
                for packet in container.demux():
                    if packet.size == 0 and packet.pts is None and packet.dts is None:
                        continue
                    index = packet.stream.index
                    if index in copied:
                        timeline.shift_packet(packet, copied=True)
                        if packet.dts is not None and packet.size > 0:
                            yield packet
                    elif index == video and packet.size > 0:
                        timeline.shift_packet(packet, copied=False)
            except av.FFmpegError as exc:
                raise VidcolorError(f"{self.path}: cannot read ({_reason(exc)})") from exc

    def _check_end(
        self,
        decoded: int,
        unshown: int,
        stream_end: Fraction,
        target: int | None,
        last_corrupt: bool,
    ) -> None:
        """A film that ends early is an error, whatever its container says about its length:
        the header's frame count, else Matroska's duration, else a last frame cut short."""
        expected = self.info.frame_count - unshown
        if target is None and self.info.frame_count and decoded < expected:
            self._truncated(f"decoded {decoded} of the {expected} frames its header lists")
            return
        if not self.info.frame_count and last_corrupt:
            self._truncated("its last frame is incomplete")
            return
        container = self.container
        if "matroska" not in container.format.name or not container.duration:
            return
        declared = Fraction(container.duration + (container.start_time or 0), av.time_base)
        step = 1 / self.info.nominal_rate
        if stream_end and stream_end < declared - max(END_TOLERANCE, 2 * step):
            self._truncated(
                f"it stops at {float(stream_end):.2f} s, its header says {float(declared):.2f} s"
            )


class _Timeline:
    """Keeps time running forward when a source's timestamps jump back, as ffmpeg does.

    Two recordings joined byte-wise (``cat a.ts b.ts``) restart their clock in the middle:
    from a jump back on, every later packet of every stream is shifted by the same amount, so
    frames, sound and subtitles stay together and time continues from where it was.
    """

    def __init__(self, path: Path, video: av.video.stream.VideoStream, step: int):
        self.path = path
        self.video = video
        self.step = step  # one frame, in the video time base
        self.shift = Fraction(0)  # seconds added to every packet from here on
        self.frame_shift = 0  # video ticks added to frames whose pts still go back
        self.last_dts: dict[int, int] = {}
        self.next_dts: dict[int, int] = {}  # where each stream's last packet ends
        self.jump: dict[int, int] = {}  # JUMP_BACK in each stream's ticks
        self.last_pts: int | None = None  # of the last frame given out
        self.last_source: int | None = None  # its timestamp in the file
        self.seen_pts: int | None = None
        self.seen_dts: int | None = None
        self.faulty_pts = self.faulty_dts = 0
        self.warned = False

    def _warn(self, seconds: Fraction) -> None:
        if not self.warned:
            self.warned = True
            log.warning(
                "%s: timestamps jump back at %.3f s (joined recordings?): later frames, sound "
                "and subtitles are shifted so that time runs on",
                self.path,
                float(seconds),
            )

    def shift_packet(self, packet: av.Packet, copied: bool) -> None:
        """Apply the current shift; a packet well before its stream's last one starts a new
        timeline, and a copied packet slightly before it is moved one tick after it."""
        tb = packet.time_base
        if not tb or (packet.dts is None and packet.pts is None):
            return
        if self.shift:
            self._move(packet, round(self.shift / tb))
        if packet.dts is None:
            return  # only decode times must rise (a pts may go back: B-frames)
        stream = packet.stream.index
        dts = packet.dts
        last = self.last_dts.get(stream)
        jump = self.jump.get(stream)
        if jump is None:
            jump = self.jump[stream] = math.ceil(JUMP_BACK / tb)
        if last is not None and dts < last - jump:
            delta = self.next_dts[stream] - dts
            self._warn(last * tb)
            self.shift += delta * tb
            self._move(packet, delta)
            dts += delta
        elif copied and last is not None and dts <= last:
            packet.dts = dts = last + 1
            if packet.pts is not None and packet.pts < dts:
                packet.pts = dts
        self.last_dts[stream] = dts
        step = packet.duration or (self.step if stream == self.video.index else 1)
        self.next_dts[stream] = dts + step

    @staticmethod
    def _move(packet: av.Packet, ticks: int) -> None:
        if ticks:
            if packet.pts is not None:
                packet.pts += ticks
            if packet.dts is not None:
                packet.dts += ticks

    def frame_pts(self, frame: av.VideoFrame) -> int:
        """A frame's pts, after the last one: a frame at or before it shifts all later ones."""
        source = self._best_effort(frame.pts, frame.dts)
        last = self.last_pts
        if source is None:
            pts = (last if last is not None else -self.step) + self.step
        else:
            pts = source + self.frame_shift
            if last is not None and pts <= last:
                if self.last_source is not None and source > self.last_source:
                    pts = last + 1  # guessed times ran ahead of the film's own: no jump
                else:
                    self._warn(last * self.video.time_base)
                    self.frame_shift += last + self.step - pts
                    pts = last + self.step
            self.last_source = source
        self.last_pts = pts
        return pts

    def _best_effort(self, pts: int | None, dts: int | None) -> int | None:
        """FFmpeg's best-effort timestamp: the pts, unless they go back more often than the
        decode times do (B-frames in AVI, which stores no pts)."""
        if dts is not None:
            self.faulty_dts += self.seen_dts is not None and dts <= self.seen_dts
            self.seen_dts = dts
        if pts is not None:
            self.faulty_pts += self.seen_pts is not None and pts <= self.seen_pts
            self.seen_pts = pts
        if pts is not None and (dts is None or self.faulty_pts <= self.faulty_dts):
            return pts
        return dts


def _avi_null_frames(
    path: Path, container: av.container.InputContainer, stream: av.stream.Stream
) -> int:
    """AVI null frames (zero-size chunks: "show the last picture again", as ffmpeg writes for
    dropped or repeated frames) count in the header's frame total but have no index entry and
    reach no decoder. Only a whole file has its index (at the end): a cut one is not excused."""
    if not container.format.name.startswith("avi") or not _has_avi_index(path):
        return 0
    return max(0, stream.frames - len(stream.index_entries))


def _has_avi_index(path: Path) -> bool:
    """Whether the file's top-level RIFF chunks end with a complete 'idx1' index."""
    try:
        with open(path, "rb") as file:
            size = file.seek(0, 2)
            file.seek(12)  # 'RIFF', its size, 'AVI '
            while True:
                head = file.read(8)
                if len(head) < 8:
                    return False
                length = int.from_bytes(head[4:], "little")
                end = file.tell() + length + (length & 1)
                if head[:4] == b"idx1":
                    return end <= size + 1
                file.seek(end)
    except OSError:
        return False


def _cut_transport_packet(path: Path) -> int | None:
    """The packet size of a transport stream whose length is not a whole number of them."""
    try:
        with open(path, "rb") as file:
            head = file.read(3 * 204 + 4)
            size = file.seek(0, 2)
    except OSError:
        return None
    for packet, sync in _TS_PACKETS:
        if len(head) >= sync + 2 * packet + 1 and all(
            head[sync + k * packet] == 0x47 for k in range(3)
        ):
            return packet if size % packet else None
    return None


def _starts_by(packet: av.Packet, seconds: Fraction) -> bool:
    """Whether a copied packet plays from ``seconds`` on (sound of a film read from a frame)."""
    pts = packet.pts if packet.pts is not None else packet.dts
    return pts is None or not packet.time_base or pts * packet.time_base >= seconds


def _end_pts(stream: av.video.stream.VideoStream) -> int | None:
    if not stream.duration or stream.duration <= 0:
        return None
    return (stream.start_time or 0) + stream.duration


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return text.split(": '")[0].strip() or type(exc).__name__
