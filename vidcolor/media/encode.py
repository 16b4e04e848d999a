"""Encode stage: colour frames to a film with the source's timing, geometry and copied streams.

Frames keep their source pts in the source time base, so constant, NTSC (30000/1001) and
variable frame rates all come out as they went in. Options are checked and the encoder opened
before the first frame, and every encoder or muxer failure (a bad preset, a full disk) is one
``VidcolorError`` naming the output.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
import math
import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from av.video.reformatter import ColorRange, Colorspace

from vidcolor.errors import VidcolorError
from vidcolor.media.decode import VideoInfo
from vidcolor.options import X26X_PRESETS, EncodeSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CodecProfile:
    encoder: str
    pix_fmt: str  # for 8-bit sources
    pix_fmt_high: str  # for sources of more than 8 bits
    # For odd sides when pix_fmt subsamples chroma; None: pad the frame to even sides instead.
    pix_fmt_odd: str | None = None
    quality_option: str | None = None  # option that takes --crf
    default_crf: int | None = None
    crf_range: tuple[int, int] | None = None  # what the encoder accepts for --crf
    extra: tuple[tuple[str, str], ...] = ()


_X26X = ("libx264", "libx265")
CODECS: dict[str, CodecProfile] = {
    # Browser-safe default: H.264 High, 4:2:0, faststart (odd sides are padded to even).
    "h264": CodecProfile("libx264", "yuv420p", "yuv420p", None, "crf", 18, (0, 51)),
    # Exact-size H.264 on request (High 4:4:4: not every player has it); 10-bit stays 10-bit.
    "h264-444": CodecProfile("libx264", "yuv444p", "yuv444p10le", None, "crf", 18, (0, 51)),
    "h265": CodecProfile(
        "libx265",
        "yuv420p",
        "yuv420p10le",
        None,
        "crf",
        22,
        (0, 51),
        (("x265-params", "log-level=error"),),
    ),
    "vp9": CodecProfile(
        "libvpx-vp9",
        "yuv420p",
        "yuv420p10le",
        None,
        "crf",
        30,
        (0, 63),
        (("b", "0"), ("row-mt", "1")),
    ),
    "av1": CodecProfile("libsvtav1", "yuv420p", "yuv420p10le", None, "crf", 30, (0, 63)),
    # Archival masters, exact size: lossless FFV1 or ProRes 422 HQ / 4444.
    "ffv1": CodecProfile(
        "ffv1", "yuv444p", "yuv444p10le", extra=(("level", "3"), ("slicecrc", "1"))
    ),
    "prores": CodecProfile(
        "prores_ks", "yuv422p10le", "yuv422p10le", "yuv444p10le", extra=(("profile", "3"),)
    ),
}
_BT709 = 1  # AVCOL_PRI_BT709 and AVCOL_TRC_BT709
# Containers whose players understand each muxer's "faststart"-style option.
_MP4_LIKE = {"mp4", "mov", "m4v"}
# MPEG transport and program streams have no codec tag tables, so PyAV's supported_codecs
# lists only their defaults (MPEG-2 video, MP2 audio). What their FFmpeg muxers take and
# players expect there, by codec name:
_FORMAT_CODECS: dict[str, frozenset[str]] = {
    # .ts, .m2ts, .mts: broadcast, Blu-ray, camcorders
    "mpegts": frozenset(
        {
            "h264",
            "hevc",
            "mpeg2video",
            "mpeg1video",
            "aac",
            "ac3",
            "eac3",
            "mp2",
            "mp3",
            "opus",
            "dvb_subtitle",
            "dvb_teletext",
        }
    ),
    # .mpg, .mpeg (and .vob): the audio FFmpeg's program stream muxer accepts
    "mpeg": frozenset(
        {
            "h264",
            "mpeg1video",
            "mpeg2video",
            "mp1",
            "mp2",
            "mp3",
            "ac3",
            "dts",
            "pcm_dvd",
            "pcm_s16be",
            "dvd_subtitle",
        }
    ),
}
_FORMAT_CODECS["vob"] = _FORMAT_CODECS["mpeg"]


def codec_profile(settings: EncodeSettings) -> CodecProfile:
    """The codec's profile, once its settings are known to be ones the encoder accepts.

    Checked before any work, so a typo fails in a second, not after decoding a film.
    """
    try:
        profile = CODECS[settings.codec]
    except KeyError:
        raise VidcolorError(
            f"unknown codec {settings.codec!r}; choose one of {', '.join(CODECS)}"
        ) from None
    if settings.preset not in X26X_PRESETS:
        raise VidcolorError(
            f"unknown preset {settings.preset!r}; choose one of {', '.join(X26X_PRESETS)}"
        )
    if settings.crf is not None:
        if profile.crf_range is None:
            raise VidcolorError(
                f"--crf does not apply to {settings.codec}: it has no quality scale"
            )
        low, high = profile.crf_range
        if not low <= settings.crf <= high:
            raise VidcolorError(
                f"--crf {settings.crf} is out of range for {settings.codec} ({low}..{high})"
            )
    return profile


def choose_pix_fmt(profile: CodecProfile, info: VideoInfo) -> str:
    """The encoder's pixel format for this source (odd sides: see ``encoded_size``)."""
    fmt = profile.pix_fmt_high if info.bit_depth > 8 else profile.pix_fmt
    if fmt != profile.pix_fmt and fmt not in _encoder_formats(profile.encoder):
        # e.g. a libvpx built without high bit depth: 8 bits rather than no film at all
        log.warning(
            "%s in this FFmpeg build has no %s: encoding %d-bit source as %s",
            profile.encoder,
            fmt,
            info.bit_depth,
            profile.pix_fmt,
        )
        fmt = profile.pix_fmt
    if encoded_size(fmt, info.width, info.height) != (info.width, info.height):
        return profile.pix_fmt_odd or fmt
    return fmt


def _encoder_formats(encoder: str) -> set[str]:
    try:
        return {f.name for f in av.codec.Codec(encoder, "w").video_formats or ()}
    except (av.FFmpegError, ValueError):
        return set()


def encoded_size(pix_fmt: str, width: int, height: int) -> tuple[int, int]:
    """The frame size ``pix_fmt`` can store: 4:2:0 needs even sides, 4:2:2 an even width."""
    step_x, step_y = _chroma_steps(pix_fmt)
    return -(-width // step_x) * step_x, -(-height // step_y) * step_y


def _chroma_steps(pix_fmt: str) -> tuple[int, int]:
    probe = av.VideoFormat(pix_fmt, 4, 4)
    chroma = [c for c in probe.components if c.is_chroma]
    if not chroma:
        return 1, 1
    return 4 // chroma[0].width, 4 // chroma[0].height


class VideoWriter:
    """Owns the output container: one colour video stream plus streams copied from the source.

    ``label`` is the name messages give (the final file, not the temporary one written).
    """

    def __init__(
        self,
        path: Path,
        info: VideoInfo,
        settings: EncodeSettings,
        copied_streams: list[av.stream.Stream],
        label: Path | None = None,
    ):
        self.path = path
        self.label = label or path
        self.info = info
        profile = codec_profile(settings)
        if profile.encoder not in av.codecs_available:
            raise VidcolorError(f"encoder {profile.encoder} is not in this FFmpeg build")
        fmt = path.suffix.lower().lstrip(".")
        self._mp4 = fmt in _MP4_LIKE
        options: dict[str, str] = {}
        if self._mp4:
            # faststart: plays while downloading; movie_timescale = the source time base keeps
            # the edit list (first pts != 0) exact instead of rounding it to milliseconds.
            options = {"movflags": "+faststart", "movie_timescale": str(info.time_base.denominator)}
        try:
            self.container = av.open(
                str(path), "w", container_options=options, format=_format_for(path)
            )
        except (av.FFmpegError, OSError, ValueError) as exc:
            raise VidcolorError(f"{self.label}: cannot create output ({self._why(exc)})") from exc
        self.pix_fmt = choose_pix_fmt(profile, info)
        self.width, self.height = encoded_size(self.pix_fmt, info.width, info.height)
        try:
            self.stream = self._add_video_stream(profile, settings, fmt)
            self.copied = self._add_copied_streams(copied_streams)
            self._start(settings)
        except BaseException:
            self.abort()
            raise
        self.frames_written = 0
        # Each frame is encoded once the next one arrives, when its display duration is known;
        # the encoder's last packet waits for close(), which sets its duration.
        self._held: av.VideoFrame | None = None
        self._durations: dict[int, int] = {}
        self._last_duration: int | None = None
        self._queued: av.Packet | None = None
        self._first_dts: int | None = None
        self._first_pts: int | None = None
        self._end_pts: int | None = None
        self._copied_dts: dict[int, int] = {}  # last decode time muxed, per copied stream
        self.high_bit_depth = max(c.bits for c in av.VideoFormat(self.pix_fmt).components) > 8

    @property
    def padded(self) -> bool:
        """Whether frames are padded (odd sides, 4:2:0) to the size the encoder stores."""
        return (self.width, self.height) != (self.info.width, self.info.height)

    def _add_video_stream(
        self, profile: CodecProfile, settings: EncodeSettings, fmt: str
    ) -> av.video.stream.VideoStream:
        info = self.info
        codec = av.Codec(profile.encoder, "w").canonical_name
        if not self._can_hold({codec, profile.encoder}):
            raise VidcolorError(
                f"{self.label}: a .{fmt} file cannot hold {settings.codec} "
                "video; pick another extension or --codec"
            )
        if self.padded:
            log.warning(
                "%s: odd frame size %dx%d: padded to %dx%d by repeating the edge (4:2:0 needs "
                "even sides; use --codec ffv1 or prores for an exact-size master, or "
                "--codec h264-444)",
                self.label,
                info.width,
                info.height,
                self.width,
                self.height,
            )
        try:
            stream = self.container.add_stream(profile.encoder, rate=info.nominal_rate)
        except ValueError as exc:  # a format PyAV knows cannot hold it
            raise VidcolorError(
                f"{self.label}: a .{fmt} file cannot hold {settings.codec} "
                "video; pick another extension or --codec"
            ) from exc
        stream.width = self.width
        stream.height = self.height
        stream.pix_fmt = self.pix_fmt
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
        if profile.encoder in _X26X:
            options["preset"] = settings.preset
            if self.container.format.name == "avi":
                options["bf"] = "0"  # AVI stores no pts: reordered frames would play shuffled
        if profile.encoder == "libx265":
            stream.codec_tag = "hvc1"
        if profile.encoder == "libsvtav1":
            os.environ.setdefault("SVT_LOG", "1")  # errors only: SVT prints its setup on stderr
        stream.options = options
        if settings.threads:
            stream.codec_context.thread_count = settings.threads
        if info.rotation:
            stream.set_display_rotation(info.rotation)
        return stream

    def _start(self, settings: EncodeSettings) -> None:
        """Open the encoder and write the file's header now, not at the first frame: a bad
        option, a codec the container refuses or an unwritable file fails before any work."""
        try:
            self.stream.codec_context.open()
        except (av.FFmpegError, OSError) as exc:
            raise VidcolorError(
                f"{self.label}: cannot set up the {settings.codec} encoder ({self._why(exc)})"
            ) from exc
        try:
            self.container.start_encoding()
        except (av.FFmpegError, OSError) as exc:
            hint = ""
            if self.copied and getattr(exc, "errno", None) == errno.EINVAL:
                kinds = " and ".join(sorted({s.type for s in self.copied.values()}))
                hint = f"; the {kinds} copied from the source may not fit this format: try .mkv"
            raise VidcolorError(f"{self.label}: cannot write ({self._why(exc)}){hint}") from exc

    def _can_hold(self, names: Iterable[str]) -> bool:
        names = set(names)
        table = _FORMAT_CODECS.get(self.container.format.name)
        if table is not None:
            return bool(names & table)
        supported = self.container.supported_codecs
        return not supported or bool(names & set(supported))

    def _add_copied_streams(self, sources: list[av.stream.Stream]) -> dict[int, av.stream.Stream]:
        copied: dict[int, av.stream.Stream] = {}
        for source in sources:
            names = _codec_names(source)
            if not self._can_hold(names):
                log.warning(
                    "%s stream #%d (%s) cannot be stored in a %s file: left out",
                    source.type,
                    source.index,
                    min(names, key=len, default="?"),
                    self.path.suffix,
                )
                continue
            copied[source.index] = self.container.add_stream_from_template(source)
        return copied

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """Encoder and muxer failures (a full disk, an I/O error) as one line naming the file."""
        try:
            yield
        except (av.FFmpegError, OSError) as exc:
            raise VidcolorError(f"{self.label}: cannot write ({self._why(exc)})") from exc

    def _why(self, exc: BaseException) -> str:
        """The system's reason; FFmpeg's own message when the code alone says little."""
        text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        entry = getattr(exc, "log", None)
        if getattr(exc, "errno", None) in (errno.EINVAL, None) and entry and entry[-1]:
            text = f"{text}: {str(entry[-1]).strip()}"
        text = text.replace(str(self.path), str(self.label))
        return " ".join(text.split())

    def write(self, rgb: np.ndarray, pts: int) -> None:
        """Encode one colour frame (H, W, 3) of the source's size at ``pts`` (source time base)."""
        if rgb.shape[:2] != (self.info.height, self.info.width):
            raise ValueError(
                f"frame of {rgb.shape[1]}x{rgb.shape[0]}, the film is "
                f"{self.info.width}x{self.info.height}"
            )
        if self._held is not None and pts <= self._held.pts:
            raise VidcolorError(
                f"{self.label}: frame times must rise: pts {pts} after {self._held.pts}"
            )
        if self.padded:
            pad = ((0, self.height - self.info.height), (0, self.width - self.info.width), (0, 0))
            rgb = np.pad(rgb, pad, mode="edge")
        fmt = "rgb48le" if rgb.dtype == np.uint16 else "rgb24"
        frame = av.VideoFrame.from_ndarray(rgb, format=fmt)
        frame = frame.reformat(
            format=self.pix_fmt,
            dst_colorspace=Colorspace.ITU709,
            dst_color_range=ColorRange.MPEG,
        )
        frame.pts = pts
        frame.time_base = self.info.time_base
        if self._held is not None:
            with self._writing():
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
            self._mux_video(packet)

    def _mux_video(self, packet: av.Packet) -> None:
        """Mux a video packet, holding back the last one: its duration is set on closing."""
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
        """Mux source packets unchanged (payload and times), decode times kept rising."""
        with self._writing():
            for packet in packets:
                target = self.copied.get(packet.stream.index)
                if target is not None:
                    packet.stream = target
                    self._keep_rising(packet, target)
                    self.container.mux(packet)

    def _keep_rising(self, packet: av.Packet, target: av.stream.Stream) -> None:
        """Decode times one tick apart in the source may round to one tick of the output's
        coarser time base, which muxers refuse: move such a packet one output tick on."""
        source_tb, tb = packet.time_base, target.time_base
        if packet.dts is None or not source_tb or not tb:
            return
        dts = _rescale(packet.dts, source_tb, tb)
        last = self._copied_dts.get(target.index)
        if last is not None and dts <= last:
            pts = _rescale(packet.pts, source_tb, tb) if packet.pts is not None else None
            duration = _rescale(packet.duration, source_tb, tb) if packet.duration else 0
            packet.time_base = tb
            packet.dts = dts = last + 1
            packet.pts = max(pts, dts) if pts is not None else None
            packet.duration = duration
        self._copied_dts[target.index] = dts

    def close(self) -> None:
        """Flush the encoder and finish the file."""
        with self._writing():
            if self._held is not None:
                duration = self._final_duration(self._held.pts)
                self._end_pts = self._held.pts + duration
                self._encode(self._held, duration)
                self._held = None
            self._encode(None)
            self._finish()

    def _finish(self) -> None:
        if self._queued is not None:
            if self._mp4:
                self._queued.duration = self._closing_duration(self._queued)
            self.container.mux(self._queued)
            self._queued = None
        self.container.close()

    def abort(self) -> None:
        """Close without finishing, after a failure: never raises a second error."""
        with contextlib.suppress(av.FFmpegError, OSError):
            self.container.close()


class PacketJoiner(VideoWriter):
    """A film written from encoded chunks by copying their packets: no re-encode.

    The container is set up as ``VideoWriter`` sets it up (faststart, time scale, rotation,
    copied streams), with the video stream taken from the first chunk's.
    """

    def __init__(
        self,
        path: Path,
        info: VideoInfo,
        settings: EncodeSettings,
        copied_streams: list[av.stream.Stream],
        template: av.video.stream.VideoStream,
        label: Path | None = None,
    ):
        self._template = template
        super().__init__(path, info, settings, copied_streams, label)

    def _add_video_stream(
        self, profile: CodecProfile, settings: EncodeSettings, fmt: str
    ) -> av.video.stream.VideoStream:
        try:
            stream = self.container.add_stream_from_template(
                self._template, rate=self.info.nominal_rate
            )
        except ValueError as exc:
            raise VidcolorError(f"{self.label}: cannot hold the chunks' video ({exc})") from exc
        stream.time_base = self.info.time_base
        if self.info.rotation:
            stream.set_display_rotation(self.info.rotation)
        return stream

    def _start(self, settings: EncodeSettings) -> None:
        try:
            self.container.start_encoding()
        except (av.FFmpegError, OSError) as exc:
            raise VidcolorError(f"{self.label}: cannot write ({self._why(exc)})") from exc

    def mux_frame(self, packet: av.Packet, duration: int) -> None:
        """Mux one encoded frame of a chunk; ``duration`` in the packet's time base."""
        packet.stream = self.stream
        packet.duration = duration
        with self._writing():
            self._mux_video(packet)
        self.frames_written += 1

    def finish(self, first_pts: int, end_pts: int) -> None:
        """Finish the file; the film's frames span ``[first_pts, end_pts)`` (source time base)."""
        self._first_pts, self._end_pts = first_pts, end_pts
        with self._writing():
            self._finish()


def _codec_names(stream: av.stream.Stream) -> set[str]:
    """The stream's codec by its FFmpeg name ("mp3") and its decoder's ("mp3float")."""
    names: set[str] = set()
    ctx = stream.codec_context
    if ctx is not None:
        names.add(ctx.name)
        with contextlib.suppress(AttributeError, ValueError):
            names.add(ctx.codec.canonical_name)
    return names


def _rescale(value: int, source: Fraction, target: Fraction) -> int:
    """As FFmpeg rescales timestamps when muxing: to the nearest tick, halves away from 0."""
    exact = value * source / target
    rounded = math.floor(abs(exact) + Fraction(1, 2))
    return rounded if exact >= 0 else -rounded


@functools.lru_cache(maxsize=64)
def container_holds(suffix: str, codec: str) -> bool:
    """Whether a file named ``*suffix`` can hold ``codec`` (a key of CODECS) video.

    Lets a folder job keep each film's extension where it can (``.mov`` stays ``.mov``) and
    pick another where it cannot (an ``.webm`` source into H.264).
    """
    profile = CODECS.get(codec)
    if profile is None:
        return False
    with tempfile.TemporaryDirectory(prefix="vidcolor-probe-") as folder:
        path = Path(folder) / f"probe{suffix.lower()}"
        try:
            container = av.open(str(path), "w", format=_format_for(path))
        except (av.FFmpegError, ValueError, OSError):
            return False
        try:
            names = {av.Codec(profile.encoder, "w").canonical_name, profile.encoder}
            table = _FORMAT_CODECS.get(container.format.name)
            if table is not None:
                return bool(names & table)
            supported = container.supported_codecs
            return not supported or bool(names & set(supported))
        finally:
            with contextlib.suppress(av.FFmpegError, OSError):
                container.close()


def _format_for(path: Path) -> str | None:
    return {".m4v": "mp4", ".mts": "mpegts", ".m2ts": "mpegts"}.get(path.suffix.lower())
