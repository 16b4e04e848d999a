"""Encode stage: colour frames to a film with the source's timing, geometry and copied streams.

Frames keep their source pts in the source time base, so constant, NTSC (30000/1001) and
variable frame rates all come out as they went in.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
from av.video.reformatter import ColorRange, Colorspace

from vidcolor.errors import VidcolorError
from vidcolor.media.decode import VideoInfo
from vidcolor.options import EncodeSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CodecProfile:
    encoder: str
    pix_fmt: str  # for 8-bit sources with even sides
    pix_fmt_high: str  # for sources of more than 8 bits
    pix_fmt_odd: str | None  # when a side is odd and pix_fmt subsamples chroma
    quality_option: str | None  # option that takes --crf
    default_crf: int | None
    extra: tuple[tuple[str, str], ...] = ()


CODECS: dict[str, CodecProfile] = {
    # Browser-safe default: H.264 High, 4:2:0, faststart.
    "h264": CodecProfile("libx264", "yuv420p", "yuv420p", "yuv444p", "crf", 18),
    "h265": CodecProfile(
        "libx265",
        "yuv420p",
        "yuv420p10le",
        "yuv444p",
        "crf",
        22,
        (("x265-params", "log-level=error"),),
    ),
    "vp9": CodecProfile(
        "libvpx-vp9", "yuv420p", "yuv420p10le", "yuv444p", "crf", 30, (("b", "0"), ("row-mt", "1"))
    ),
    "av1": CodecProfile("libsvtav1", "yuv420p", "yuv420p10le", None, "crf", 30),
    # Archival masters: lossless FFV1 or ProRes 422 HQ / 4444.
    "ffv1": CodecProfile(
        "ffv1", "yuv444p", "yuv444p10le", None, None, None, (("level", "3"), ("slicecrc", "1"))
    ),
    "prores": CodecProfile(
        "prores_ks", "yuv422p10le", "yuv422p10le", "yuv444p10le", None, None, (("profile", "3"),)
    ),
}
_BT709 = 1  # AVCOL_PRI_BT709 and AVCOL_TRC_BT709
# Containers whose players understand each muxer's "faststart"-style option.
_MP4_LIKE = {"mp4", "mov", "m4v"}


def codec_profile(settings: EncodeSettings) -> CodecProfile:
    try:
        return CODECS[settings.codec]
    except KeyError:
        raise VidcolorError(
            f"unknown codec {settings.codec!r}; choose one of {', '.join(CODECS)}"
        ) from None


def choose_pix_fmt(profile: CodecProfile, info: VideoInfo) -> str:
    fmt = profile.pix_fmt_high if info.bit_depth > 8 else profile.pix_fmt
    odd = info.width % 2 or info.height % 2
    if odd and _subsampled(fmt):
        if profile.pix_fmt_odd is None:
            raise VidcolorError(
                f"{info.width}x{info.height}: odd frame sides need a codec "
                "without chroma subsampling (try --codec ffv1)"
            )
        log.warning(
            "odd frame size %dx%d: encoding %s as %s to keep the size (4:2:0 needs "
            "even sides); some browsers only play 4:2:0",
            info.width,
            info.height,
            profile.encoder,
            profile.pix_fmt_odd,
        )
        return profile.pix_fmt_odd
    return fmt


def _subsampled(pix_fmt: str) -> bool:
    return pix_fmt.startswith(("yuv420", "yuv422", "nv"))


class VideoWriter:
    """Owns the output container: one colour video stream plus streams copied from the source."""

    def __init__(
        self,
        path: Path,
        info: VideoInfo,
        settings: EncodeSettings,
        copied_streams: list[av.stream.Stream],
        label: Path | None = None,
    ):
        self.path = path
        self.label = label or path  # the name messages give (the final one, not a temporary)
        self.info = info
        profile = codec_profile(settings)
        fmt = path.suffix.lower().lstrip(".")
        options: dict[str, str] = {}
        if fmt in _MP4_LIKE:
            # faststart: plays while downloading; movie_timescale = the source time base keeps
            # the edit list (first pts != 0) exact instead of rounding it to milliseconds.
            options = {"movflags": "+faststart", "movie_timescale": str(info.time_base.denominator)}
        try:
            self.container = av.open(str(path), "w", options=options, format=_format_for(path))
        except (av.FFmpegError, ValueError) as exc:
            raise VidcolorError(f"{self.label}: cannot create output ({exc})") from exc
        try:
            self.stream = self._add_video_stream(profile, settings, fmt)
            self.copied = self._add_copied_streams(copied_streams)
        except BaseException:
            self.container.close()
            raise
        self.frames_written = 0
        # Each frame is encoded once the next one arrives, when its display duration is known;
        # the encoder's last packet waits for close(), which sets its duration.
        self._mp4 = fmt in _MP4_LIKE
        self._held: av.VideoFrame | None = None
        self._durations: dict[int, int] = {}
        self._last_duration: int | None = None
        self._queued: av.Packet | None = None
        self._first_dts: int | None = None
        self._first_pts: int | None = None
        self._end_pts: int | None = None
        self.high_bit_depth = (
            max(c.bits for c in av.VideoFormat(self.stream.pix_fmt).components) > 8
        )

    def _add_video_stream(
        self, profile: CodecProfile, settings: EncodeSettings, fmt: str
    ) -> av.video.stream.VideoStream:
        info = self.info
        if profile.encoder not in av.codecs_available:
            raise VidcolorError(f"encoder {profile.encoder} is not in this FFmpeg build")
        if self.container.supported_codecs and profile.encoder not in _supported(self.container):
            raise VidcolorError(
                f"{self.label}: a .{fmt} file cannot hold {settings.codec} "
                "video; pick another extension or --codec"
            )
        stream = self.container.add_stream(profile.encoder, rate=info.nominal_rate)
        stream.width = info.width
        stream.height = info.height
        stream.pix_fmt = choose_pix_fmt(profile, info)
        stream.time_base = info.time_base
        stream.codec_context.time_base = info.time_base
        # Tag the matrix write() converts with: untagged, players guess (BT.601 for small
        # frames, BT.709 for HD) and some shift every colour.
        stream.codec_context.colorspace = Colorspace.ITU709
        stream.codec_context.color_range = ColorRange.MPEG
        stream.codec_context.color_primaries = _BT709
        stream.codec_context.color_trc = _BT709
        if info.sample_aspect_ratio:
            stream.codec_context.sample_aspect_ratio = info.sample_aspect_ratio
        options = dict(profile.extra)
        if profile.quality_option:
            options[profile.quality_option] = str(
                settings.crf if settings.crf is not None else profile.default_crf
            )
        if profile.encoder in ("libx264", "libx265"):
            options["preset"] = settings.preset
        if profile.encoder == "libx265":
            stream.codec_tag = "hvc1"
        if profile.encoder == "libsvtav1":
            os.environ.setdefault("SVT_LOG", "1")  # errors only: SVT prints its setup on stderr
        stream.options = options
        if info.rotation:
            stream.set_display_rotation(info.rotation)
        return stream

    def _add_copied_streams(self, sources: list[av.stream.Stream]) -> dict[int, av.stream.Stream]:
        copied: dict[int, av.stream.Stream] = {}
        supported = _supported(self.container)
        for source in sources:
            name = source.codec_context.name
            if supported and name not in supported:
                log.warning(
                    "%s stream #%d (%s) cannot be stored in a %s file: left out",
                    source.type,
                    source.index,
                    name,
                    self.path.suffix,
                )
                continue
            copied[source.index] = self.container.add_stream_from_template(source)
        return copied

    def write(self, rgb: np.ndarray, pts: int) -> None:
        fmt = "rgb48le" if rgb.dtype == np.uint16 else "rgb24"
        frame = av.VideoFrame.from_ndarray(rgb, format=fmt)
        frame = frame.reformat(
            format=self.stream.pix_fmt,
            dst_colorspace=Colorspace.ITU709,
            dst_color_range=ColorRange.MPEG,
        )
        frame.pts = pts
        frame.time_base = self.info.time_base
        if self._held is not None:
            self._encode(self._held, pts - self._held.pts)
        else:
            self._first_pts = pts
        self._held = frame
        self.frames_written += 1

    def _encode(self, frame: av.VideoFrame | None, duration: int = 0) -> None:
        """Encode ``frame`` (None flushes); packets get their frame's display duration.

        Without it the muxer guesses the last frame's duration from the average rate, and a
        variable-rate film comes out longer or shorter, with another average rate.
        """
        if frame is not None:
            self._durations[frame.pts] = duration
            self._last_duration = duration
        for packet in self.stream.encode(frame):
            if packet.pts is not None:
                packet.duration = self._durations.pop(packet.pts, packet.duration)
            if self._first_dts is None:
                self._first_dts = packet.dts
            if self._queued is not None:
                self.container.mux(self._queued)
            self._queued = packet

    def _closing_duration(self, packet: av.Packet) -> int:
        """Duration of an mp4's last sample in decode order.

        mp4 readers take a film's average rate (and cap its duration) from the span of its
        samples' decode times, which this sample ends: make that span the source's (frame
        count / average rate) when the whole film was written, else the frames' display span.
        The muxer ends the film at the largest pts + duration: a B-frame may not reach past
        the last frame's end, and the last frame keeps its own duration.
        """
        info = self.info
        end, first_pts, first_dts = self._end_pts, self._first_pts, self._first_dts
        if None in (packet.dts, packet.pts, end, first_pts, first_dts):
            return packet.duration
        if packet.pts + packet.duration >= end:  # the last frame shown
            return packet.duration
        if info.frame_count == self.frames_written and info.average_rate:
            span = round(info.frame_count / info.average_rate / info.time_base)
        else:
            span = end - first_pts
        duration = min(span - (packet.dts - first_dts), end - packet.pts)
        return duration if duration > 0 else packet.duration

    def _final_duration(self, pts: int) -> int:
        """How long the last frame shows: as in the source, else as long as the one before."""
        end = self.info.end_pts
        if end is not None and end > pts:
            return end - pts
        return self._last_duration or self.info.frame_step

    def copy(self, packets: list[av.Packet]) -> None:
        for packet in packets:
            target = self.copied.get(packet.stream.index)
            if target is not None:
                packet.stream = target
                self.container.mux(packet)

    def close(self) -> None:
        """Flush the encoder and finish the file."""
        if self._held is not None:
            duration = self._final_duration(self._held.pts)
            self._end_pts = self._held.pts + duration
            self._encode(self._held, duration)
            self._held = None
        self._encode(None)
        if self._queued is not None:
            if self._mp4:
                self._queued.duration = self._closing_duration(self._queued)
            self.container.mux(self._queued)
            self._queued = None
        self.container.close()

    def abort(self) -> None:
        with contextlib.suppress(av.FFmpegError):
            self.container.close()


def _format_for(path: Path) -> str | None:
    return {".m4v": "mp4", ".mts": "mpegts", ".m2ts": "mpegts"}.get(path.suffix.lower())


def _supported(container: av.container.OutputContainer) -> set[str]:
    return set(container.supported_codecs or ())
