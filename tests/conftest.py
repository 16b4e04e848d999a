"""Fixtures that generate tiny test media with PyAV, OpenCV and Pillow, plus inspection helpers.

Everything is made on the fly in pytest's temporary folders: small grey films with moving
shapes (any time base, rate, variable timing, first pts != 0, rotation, sample aspect ratio,
10-bit, odd size, AAC audio, SRT subtitles in .mkv) and stills of every kind vidcolor reads.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import struct
import subprocess
import sys
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SHARED_FOOTAGE = REPO / ".." / "shared" / "footage"
SAMPLE_FILM = "a-bomb-blast-effects.mp4"  # in samples/; shared/footage/bw-film-... is the same
FAST_RENDER = 64

# --- synthetic pictures ---------------------------------------------------------------------


def grey_frame(width: int, height: int, index: int, maximum: int = 255) -> np.ndarray:
    """A grey-ish (R = G = B) picture: a soft gradient, a moving bright box and a dark disc."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    grey = 0.25 + 0.35 * x / max(width - 1, 1) + 0.1 * y / max(height - 1, 1)
    bx = (index * 3) % max(width - width // 4, 1)
    by = height // 4
    grey[by : by + height // 3, bx : bx + width // 5] = 0.92
    cx = width * (0.7 - 0.3 * math.sin(index / 4))
    cy = height * (0.6 + 0.2 * math.cos(index / 5))
    grey[(x - cx) ** 2 + (y - cy) ** 2 < (min(width, height) / 6) ** 2] = 0.08
    plane = np.round(grey * maximum).astype(np.uint16 if maximum > 255 else np.uint8)
    return np.repeat(plane[:, :, None], 3, axis=2)


def asymmetric_grey(width: int, height: int, dtype: type = np.uint8) -> np.ndarray:
    """A (H, W) grey picture whose orientation is easy to tell (bright corner top-left)."""
    top = 65535 if dtype == np.uint16 else 255
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    plane = 0.2 + 0.5 * x / max(width - 1, 1) + 0.2 * y / max(height - 1, 1)
    plane[: height // 3, : width // 4] = 0.97
    plane[height // 2 :, width // 2 : width // 2 + 3] = 0.05
    values = np.round(plane * top)
    if dtype == np.uint16:
        values += np.arange(width)[None, :] % 7  # values no 8-bit source can give
    return np.clip(values, 0, top).astype(dtype)


# --- films ----------------------------------------------------------------------------------


@dataclass
class VideoSpec:
    width: int = 96
    height: int = 64
    frames: int = 12
    time_base: Fraction = Fraction(1, 14848)
    rate: Fraction = Fraction(29)
    pts: Sequence[int] | None = None  # explicit (irregular) pts; default: a regular grid
    first_pts: int = 0
    codec: str = "libx264"
    pix_fmt: str = "yuv420p"
    preset: str = "veryfast"  # keeps libx264's B-frames
    rotation: int = 0
    sar: Fraction | None = None
    audio: bool = False
    subtitles: str | None = None  # SRT text, muxed into an .mkv
    faststart: bool = True
    options: dict[str, str] = field(default_factory=dict)

    def frame_pts(self) -> list[int]:
        if self.pts is not None:
            assert len(self.pts) == self.frames
            return list(self.pts)
        step = 1 / (self.rate * self.time_base)
        return [self.first_pts + round(i * step) for i in range(self.frames)]


SRT_TEXT = """1
00:00:00,000 --> 00:00:00,200
First line

2
00:00:00,250 --> 00:00:00,400
Second line
"""


def write_video(path: Path, spec: VideoSpec) -> Path:
    """Encode a grey film as ``spec`` says; returns ``path``."""
    options: dict[str, str] = {}
    if path.suffix in (".mp4", ".mov") and spec.faststart:
        options["movflags"] = "+faststart"
    if path.suffix in (".mp4", ".mov"):
        options["movie_timescale"] = str(spec.time_base.denominator)
    high = "10le" in spec.pix_fmt or "16le" in spec.pix_fmt
    with av.open(str(path), "w", options=options) as out:
        video = out.add_stream(spec.codec, rate=spec.rate)
        video.width, video.height = spec.width, spec.height
        video.pix_fmt = spec.pix_fmt
        video.time_base = spec.time_base
        video.codec_context.time_base = spec.time_base
        if spec.codec in ("libx264", "libx265"):
            video.options = {"preset": spec.preset, "crf": "20", **spec.options}
        if spec.sar is not None:
            video.codec_context.sample_aspect_ratio = spec.sar
        if spec.rotation:
            video.set_display_rotation(spec.rotation)
        audio = _add_audio(out) if spec.audio else None
        subtitle_input = None
        if spec.subtitles is not None:
            srt = path.with_suffix(".srt")
            srt.write_text(spec.subtitles)
            subtitle_input = av.open(str(srt))
            subtitle_out = out.add_stream_from_template(subtitle_input.streams.subtitles[0])
        pts_list = spec.frame_pts()
        duration = float((pts_list[-1] + pts_list[-1] - pts_list[-2]) * spec.time_base)
        for index, pts in enumerate(pts_list):
            rgb = grey_frame(spec.width, spec.height, index, 65535 if high else 255)
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb48le" if high else "rgb24")
            frame = frame.reformat(format=spec.pix_fmt)
            frame.pts = pts
            frame.time_base = spec.time_base
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        if audio is not None:
            _write_sine(out, audio, duration)
        if subtitle_input is not None:
            for packet in subtitle_input.demux(subtitle_input.streams.subtitles[0]):
                if packet.dts is None:
                    continue
                packet.stream = subtitle_out
                out.mux(packet)
            subtitle_input.close()
    return path


def cut_like_stream_copy(source: Path, target: Path, keyframe: int, first_shown: int) -> Path:
    """Remux from the keyframe at pts ``keyframe`` with pts ``first_shown`` becoming 0, as
    ``ffmpeg -ss ... -c copy`` does: mp4 gets an edit list and the frames before it are
    decoded but never shown."""
    with av.open(str(source)) as inp:
        stream = inp.streams.video[0]
        scale = {"movie_timescale": str(stream.time_base.denominator)}
        out = av.open(str(target), "w", options=scale)
        copy = out.add_stream_from_template(stream)
        for packet in inp.demux(stream):
            if packet.dts is None or packet.dts < keyframe - 1024:  # B-frame delay: 2 frames
                continue
            packet.pts -= first_shown
            packet.dts -= first_shown
            packet.stream = copy
            out.mux(packet)
        out.close()
    return target


def _add_audio(out: av.container.OutputContainer) -> av.audio.stream.AudioStream:
    audio = out.add_stream("aac", rate=44100)
    audio.codec_context.layout = "mono"
    return audio


def _write_sine(
    out: av.container.OutputContainer, audio: av.audio.stream.AudioStream, seconds: float
) -> None:
    rate = 44100
    samples = int(seconds * rate)
    t = np.arange(samples) / rate
    wave = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    for start in range(0, samples, 1024):
        chunk = wave[start : start + 1024][None, :]
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(chunk), format="fltp", layout="mono"
        )
        frame.sample_rate = rate
        frame.pts = start
        frame.time_base = Fraction(1, rate)
        out.mux(audio.encode(frame))
    out.mux(audio.encode(None))


def default_signal_handlers() -> None:
    """The handlers vidcolor's own would replace, at their defaults: under nohup a test (or a
    run it starts) would inherit SIGHUP ignored, which vidcolor rightly keeps ignored."""
    from vidcolor import signals

    for signum in signals.HANDLED:
        signal.signal(signum, signal.SIG_DFL)


@pytest.fixture
def saved_handlers(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Handlers and the received signal are process-wide: put both back for later tests."""
    from vidcolor import signals

    monkeypatch.setattr(signals, "_received", None)
    before = {signum: signal.getsignal(signum) for signum in signals.HANDLED}
    default_signal_handlers()
    yield
    for signum, handler in before.items():
        signal.signal(signum, handler)


@pytest.fixture
def make_video(tmp_path: Path) -> Callable[..., Path]:
    """``make_video(name="in.mp4", **VideoSpec fields)`` -> a fresh film in tmp_path."""

    def make(name: str = "in.mp4", **fields: object) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        return write_video(path, VideoSpec(**fields))  # type: ignore[arg-type]

    return make


# Irregular timing (tb 1/1000): gaps of 33, 47, 20, 67, 33, 90, 40 ... ms.
VFR_PTS = [0, 33, 80, 100, 167, 200, 290, 330, 363, 450, 483, 520]


@pytest.fixture(scope="session")
def sample_films(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One film per timing/geometry case, made once for the whole session."""
    folder = tmp_path_factory.mktemp("films")
    specs = {
        "cfr29": VideoSpec(),
        "ntsc": VideoSpec(time_base=Fraction(1, 30000), rate=Fraction(30000, 1001)),
        "vfr": VideoSpec(time_base=Fraction(1, 1000), rate=Fraction(25), pts=VFR_PTS),
        "offset": VideoSpec(first_pts=5120),
        "rotated": VideoSpec(rotation=90),
        "sar": VideoSpec(sar=Fraction(4, 3)),
        "tenbit": VideoSpec(pix_fmt="yuv420p10le"),
        "odd": VideoSpec(width=97, height=55, pix_fmt="yuv444p"),
        "audio": VideoSpec(audio=True),
        # keyframes every 6 frames, with B-frames: a keyframe is decoded before it is shown
        "gop": VideoSpec(frames=30, options={"g": "6"}),
    }
    films = {name: write_video(folder / f"{name}.mp4", spec) for name, spec in specs.items()}
    films["subtitled"] = write_video(folder / "subtitled.mkv", VideoSpec(subtitles=SRT_TEXT))
    films["gop_mkv"] = write_video(folder / "gop.mkv", specs["gop"])
    # starts 1 frame after the keyframe at frame 6: 24 frames stored, 23 shown
    films["edit_list"] = cut_like_stream_copy(films["gop"], folder / "cut.mp4", 3072, 3584)
    return films


# --- stills ---------------------------------------------------------------------------------


def write_image(path: Path, kind: str, width: int = 80, height: int = 48) -> Path:
    """Write a still of ``kind``; see ``IMAGE_KINDS``."""
    grey8 = asymmetric_grey(width, height)
    if kind == "grey_jpeg":
        cv2.imwrite(str(path), grey8)
    elif kind == "rgb_png":
        cv2.imwrite(str(path), np.dstack([grey8, grey8, grey8]))
    elif kind == "grey16_png":
        cv2.imwrite(str(path), asymmetric_grey(width, height, np.uint16))
    elif kind == "rgb16_png":
        grey16 = asymmetric_grey(width, height, np.uint16)
        cv2.imwrite(str(path), np.dstack([grey16, grey16, grey16]))
    elif kind == "palette_png":
        Image.fromarray(grey8, "L").convert("RGB").convert("P", palette=Image.ADAPTIVE).save(path)
    elif kind == "rgba_png":
        alpha = np.tile(np.linspace(0, 255, width).astype(np.uint8), (height, 1))
        Image.fromarray(np.dstack([grey8, grey8, grey8, alpha]), "RGBA").save(path)
    elif kind == "exif6_jpeg":
        exif = Image.Exif()
        exif[0x0112] = 6
        Image.fromarray(grey8, "L").convert("RGB").save(path, exif=exif, quality=95)
    elif kind == "sepia_jpeg":
        tint = np.array([1.0, 0.85, 0.65], dtype=np.float32)
        sepia = (grey8[:, :, None].astype(np.float32) * tint).astype(np.uint8)
        Image.fromarray(sepia, "RGB").save(path, quality=95)
    elif kind == "grey16_tiff":
        cv2.imwrite(str(path), asymmetric_grey(width, height, np.uint16))
    else:
        raise ValueError(kind)
    return path


IMAGE_KINDS = {
    "grey_jpeg": ".jpg",
    "rgb_png": ".png",
    "grey16_png": ".png",
    "rgb16_png": ".png",
    "palette_png": ".png",
    "rgba_png": ".png",
    "exif6_jpeg": ".jpg",
    "sepia_jpeg": ".jpg",
    "grey16_tiff": ".tif",
}


@pytest.fixture
def make_image(tmp_path: Path) -> Callable[..., Path]:
    """``make_image(kind, name=None, width=80, height=48)`` -> a fresh still in tmp_path."""

    def make(kind: str, name: str | None = None, width: int = 80, height: int = 48) -> Path:
        path = tmp_path / (name or f"{kind}{IMAGE_KINDS[kind]}")
        path.parent.mkdir(parents=True, exist_ok=True)
        return write_image(path, kind, width, height)

    return make


# --- the model and the footage --------------------------------------------------------------


# One inference thread: on a busy 2-core machine (a model training beside the tests) two
# OpenMP threads wait on each other for seconds per call, where one thread takes milliseconds.
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@pytest.fixture(scope="session", autouse=True)
def engine_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One engine cache for the whole session, in and out of process, never the user's.

    Exported once (fp32, then the int8 calibration) before the first test: the CLI tests'
    subprocesses then find it, as a user's second run would. Under pytest-xdist the test
    processes share it (in the run's common temporary folder): the cache's per-entry locks make
    them export once, as two runs started at once would.
    """
    from vidcolor.engines.cache import CACHE_ENV

    if os.environ.get("PYTEST_XDIST_WORKER"):
        folder = tmp_path_factory.getbasetemp().parent / "engine-cache"
        folder.mkdir(exist_ok=True)
    else:
        folder = tmp_path_factory.mktemp("engine-cache")
    saved = os.environ.get(CACHE_ENV)
    os.environ[CACHE_ENV] = str(folder)
    # Built now, not by whichever test comes first: a test that signals a CLI run mid-film
    # must not catch it exporting (under xdist any test may come first).
    from vidcolor.engines.export import cached_export
    from vidcolor.models.shipped import default_weights

    cached_export(default_weights(), "int8")
    yield folder
    if saved is None:
        os.environ.pop(CACHE_ENV, None)
    else:
        os.environ[CACHE_ENV] = saved


@pytest.fixture(scope="session")
def engine(engine_cache: Path):
    """The default CPU engine (ONNX Runtime int8 of the shipped model), loaded once."""
    import torch

    from vidcolor.engines import load_engine

    torch.set_num_threads(1)
    return load_engine(device="cpu", threads=1)


@pytest.fixture(scope="session")
def torch_engine():
    """The shipped model in PyTorch fp32 on the CPU: the reference the exports are held to."""
    import torch

    from vidcolor.engines import load_engine

    torch.set_num_threads(1)
    return load_engine(device="cpu", backend="torch")


@pytest.fixture(scope="session")
def shared_footage() -> Path:
    """``../shared/footage`` next to the repository; skips when this checkout lacks it."""
    if not SHARED_FOOTAGE.is_dir():
        pytest.skip(f"shared footage not found: no folder ../shared/footage next to {REPO}")
    return SHARED_FOOTAGE


# --- inspection -----------------------------------------------------------------------------


@dataclass
class FilmFacts:
    """What a film holds, read back with PyAV independently of vidcolor."""

    width: int
    height: int
    time_base: Fraction
    average_rate: Fraction | None
    pts: list[int]
    rotation: float
    sar: Fraction | None
    codec: str
    pix_fmt: str
    chroma: float  # mean Lab chroma over the frames
    duration: Fraction | None  # of the video stream, in seconds

    @property
    def times(self) -> list[Fraction]:
        return [p * self.time_base for p in self.pts]


def film_facts(path: Path) -> FilmFacts:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        pts: list[int] = []
        rotation = 0.0
        chroma: list[float] = []
        for frame in container.decode(stream):
            if not pts:
                rotation = float(frame.rotation or 0)
            pts.append(frame.pts)
            if len(chroma) < 8:
                chroma.append(mean_chroma(frame.to_ndarray(format="rgb24")))
        return FilmFacts(
            width=stream.codec_context.width,
            height=stream.codec_context.height,
            time_base=stream.time_base,
            average_rate=stream.average_rate,
            pts=pts,
            rotation=rotation,
            sar=stream.sample_aspect_ratio or stream.codec_context.sample_aspect_ratio,
            codec=stream.codec_context.name,
            pix_fmt=stream.codec_context.pix_fmt,
            chroma=float(np.mean(chroma)) if chroma else 0.0,
            duration=stream.duration * stream.time_base if stream.duration else None,
        )


def packets_of(path: Path, kind: str) -> list[tuple[Fraction, bytes]]:
    """(pts in seconds, payload) of every packet of the first stream of ``kind``."""
    with av.open(str(path)) as container:
        streams = [s for s in container.streams if s.type == kind]
        if not streams:
            return []
        return [
            (p.pts * p.time_base, bytes(p))
            for p in container.demux(streams[0])
            if p.size > 0 and p.pts is not None
        ]


def mean_chroma(rgb: np.ndarray) -> float:
    """Mean Lab chroma sqrt(a^2 + b^2) of an RGB image of any integer depth."""
    top = float(np.iinfo(rgb.dtype).max) if np.issubdtype(rgb.dtype, np.integer) else 1.0
    if rgb.ndim == 2:
        return 0.0
    lab = cv2.cvtColor(rgb[:, :, :3].astype(np.float32) / top, cv2.COLOR_RGB2Lab)
    return float(np.mean(np.hypot(lab[:, :, 1], lab[:, :, 2])))


def same_angle(a: float, b: float) -> bool:
    return (a - b) % 360 == 0


def top_level_boxes(path: Path) -> list[str]:
    """The ISO-BMFF top-level box names in file order."""
    names = []
    data = path.read_bytes()
    offset = 0
    while offset + 8 <= len(data):
        size = int.from_bytes(data[offset : offset + 4], "big")
        name = data[offset + 4 : offset + 8].decode("latin-1")
        if size == 1:
            size = int.from_bytes(data[offset + 8 : offset + 16], "big")
        elif size == 0:
            size = len(data) - offset
        names.append(name)
        offset += size
    return names


def mp4_movie_duration(path: Path) -> Fraction:
    """The duration an mp4's movie header (mvhd) gives players, in seconds."""
    data = path.read_bytes()
    at = data.index(b"mvhd") + 4
    if data[at] == 1:  # version 1: 64-bit times
        scale, length = int.from_bytes(data[at + 20 : at + 24], "big"), data[at + 24 : at + 32]
    else:
        scale, length = int.from_bytes(data[at + 12 : at + 16], "big"), data[at + 16 : at + 20]
    return Fraction(int.from_bytes(length, "big"), scale)


# --- running the CLI -------------------------------------------------------------------------


@dataclass
class CliRun:
    returncode: int
    stdout: str
    stderr: str


def run_cli(*args: str | os.PathLike, timeout: float = 300) -> CliRun:
    """``python -m vidcolor ARGS`` in a subprocess from the repository root."""
    env = dict(os.environ, PYTHONPATH=str(REPO), COLUMNS="120", **ONE_THREAD)
    proc = subprocess.run(
        [sys.executable, "-m", "vidcolor", *map(str, args)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return CliRun(proc.returncode, proc.stdout, proc.stderr)


def leftovers(folder: Path, recursive: bool = True) -> list[Path]:
    """Temporary '.part' files vidcolor may have left behind."""
    found = folder.rglob("*") if recursive else folder.iterdir()
    return [p for p in found if ".part" in p.name]


# --- damaged and unusual films (tests of vidcolor.media.decode / encode) ---------------------


def remux(source: Path, target: Path) -> Path:
    """Copy the video and audio packets of ``source`` unchanged into ``target``'s container."""
    with av.open(str(source)) as inp, av.open(str(target), "w") as out:
        kept = [s for s in inp.streams if s.type in ("video", "audio")]
        copies = {s.index: out.add_stream_from_template(s) for s in kept}
        for packet in inp.demux(*kept):
            if packet.dts is None:
                continue
            packet.stream = copies[packet.stream.index]
            out.mux(packet)
    return target


def joined_twice(source: Path, target: Path) -> Path:
    """``cat source source > target``: a transport stream whose clock restarts halfway."""
    target.write_bytes(source.read_bytes() * 2)
    return target


def write_avi_with_null_frame(path: Path, frames: int = 6, dropped: int = 3) -> Path:
    """H.264 in AVI without B-frames (``ffmpeg -c:v libx264 -bf 0 x.avi``) where picture
    ``dropped`` is a null frame: a zero-size chunk, "show the previous picture again"."""
    rate = Fraction(25)
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=rate)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        video.time_base = video.codec_context.time_base = 1 / rate
        video.options = {"bf": "0", "preset": "veryfast"}
        packets = []
        for index, pts in enumerate(p for p in range(frames + 1) if p != dropped):
            frame = av.VideoFrame.from_ndarray(grey_frame(64, 48, index), format="rgb24")
            frame = frame.reformat(format="yuv420p")
            frame.pts, frame.time_base = pts, 1 / rate
            packets += video.encode(frame)
        packets += video.encode(None)
        for packet in packets:
            if packet.pts == dropped + 1:
                null = av.Packet(b"")
                null.stream, null.time_base = video, 1 / rate
                null.pts = null.dts = dropped
                out.mux(null)
            out.mux(packet)
    return path


def write_frames_of_two_sizes(
    path: Path, sizes: Sequence[tuple[int, int]] = ((96, 64), (80, 48)), per_size: int = 4
) -> Path:
    """Motion JPEG in Matroska whose frames change size: each JPEG carries its own size, as in
    a film joined from two sources."""
    time_base = Fraction(1, 1000)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mjpeg", rate=25)
        stream.width, stream.height = sizes[0]
        stream.pix_fmt, stream.time_base = "yuvj420p", time_base
        index = 0
        for width, height in sizes:
            encoder = av.CodecContext.create("mjpeg", "w")
            encoder.width, encoder.height = width, height
            encoder.pix_fmt, encoder.time_base, encoder.framerate = "yuvj420p", time_base, 25
            encoder.open()
            packets = []
            for _ in range(per_size):
                rgb = grey_frame(width, height, index)
                frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuvj420p")
                frame.pts, frame.time_base = index * 40, time_base
                packets += encoder.encode(frame)
                index += 1
            for packet in [*packets, *encoder.encode(None)]:
                packet.stream, packet.time_base = stream, time_base
                out.mux(packet)
    return path


def write_with_cover(path: Path, film: bool) -> Path:
    """An .mp4 with AAC sound and a PNG cover (an attached picture), and a film if ``film``."""
    cover = cv2.imencode(".png", grey_frame(64, 48, 0))[1].tobytes()
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=25) if film else None
        if video is not None:
            video.width, video.height, video.pix_fmt = 96, 64, "yuv420p"
        audio = _add_audio(out)
        picture = out.add_stream("png")
        picture.width, picture.height, picture.pix_fmt = 64, 48, "rgb24"
        picture.disposition = av.stream.Disposition.attached_pic
        packet = av.Packet(cover)
        packet.stream, packet.pts, packet.dts = picture, 0, 0
        packet.time_base = Fraction(1, 90000)
        out.mux(packet)
        if video is not None:
            for index in range(12):
                frame = av.VideoFrame.from_ndarray(grey_frame(96, 64, index), format="rgb24")
                frame = frame.reformat(format="yuv420p")
                frame.pts = index
                out.mux(video.encode(frame))
            out.mux(video.encode(None))
        _write_sine(out, audio, 0.5)
    return path


def write_declaring_size(path: Path, width: int, height: int) -> Path:
    """A raw grey AVI of 96x64 frames whose headers declare ``width`` x ``height``."""
    write_video(path, VideoSpec(codec="rawvideo", pix_fmt="gray", frames=3))
    data = bytearray(path.read_bytes())
    header = data.index(b"avih") + 8  # MainAVIHeader: dwWidth, dwHeight at offset 32
    struct.pack_into("<II", data, header + 32, width, height)
    bitmap = data.index(b"strf") + 8  # BITMAPINFOHEADER: biSize, biWidth, biHeight
    struct.pack_into("<ii", data, bitmap + 4, width, height)
    path.write_bytes(bytes(data))
    return path


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A 200 KiB tmpfs folder, full after a few frames; skips where it cannot be mounted."""
    folder = tmp_path / "full"
    folder.mkdir()
    try:
        mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=200k", "tmpfs", str(folder)],
            capture_output=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        pytest.skip("cannot mount a tmpfs here")
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode(errors='replace')}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True, timeout=30)


# --- hand-made PNG files -------------------------------------------------------------------

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data).to_bytes(4, "big")
    return len(data).to_bytes(4, "big") + kind + data + crc


def png_declaring(width: int, height: int, extra: bytes = b"") -> bytes:
    """A PNG of a few dozen bytes whose header promises width x height grey pixels."""
    ihdr = png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
    idat = png_chunk(b"IDAT", zlib.compress(b"\x00" * (width + 1)))  # a single row
    return PNG_SIGNATURE + ihdr + extra + idat + png_chunk(b"IEND", b"")


# --- colour films whose colour flickers (tests of vidcolor.temporal) -------------------------


def panning_texture(index: int, width: int, height: int, seed: int = 0) -> np.ndarray:
    """Frame ``index`` of a camera pan (2 px right, 1 px down a frame) over a smooth random
    texture: L in 20..80, (height, width) float32."""
    rng = np.random.default_rng(seed)
    canvas_h, canvas_w = height + 200, width + 300
    plane = np.zeros((canvas_h, canvas_w), np.float32)
    for sigma, amount in ((1.5, 0.4), (4.0, 0.6), (10.0, 1.0)):
        noise = cv2.GaussianBlur(rng.random((canvas_h, canvas_w)).astype(np.float32), (0, 0), sigma)
        plane += amount * (noise - noise.mean()) / noise.std()
    plane = 20 + 60 * (plane - plane.min()) / (plane.max() - plane.min())
    y, x = 10 + index, 10 + 2 * index
    return np.ascontiguousarray(plane[y : y + height, x : x + width])


def colour_film_frames(
    frames: int, width: int = 96, height: int = 64, flicker: float = 8.0, seed: int = 0
) -> list[np.ndarray]:
    """RGB uint8 frames of a panning scene in one colour (a=20, b=30 in Lab) that jumps by
    about ``flicker`` Lab units each frame, as a per-frame colouriser's output does."""
    rng = np.random.default_rng(seed + 100)
    out = []
    for index in range(frames):
        lab = np.empty((height, width, 3), np.float32)
        lab[..., 0] = panning_texture(index, width, height, seed)
        jump = rng.normal(0, flicker, 2) if flicker else (0.0, 0.0)
        lab[..., 1], lab[..., 2] = 20 + jump[0], 30 + jump[1]
        rgb = np.clip(cv2.cvtColor(lab, cv2.COLOR_Lab2RGB), 0, 1)
        out.append(np.round(rgb * 255).astype(np.uint8))
    return out


def write_colour_film(
    path: Path, frames: int = 24, flicker: float = 8.0, audio: bool = False, seed: int = 0
) -> Path:
    """Encode ``colour_film_frames`` as H.264 4:4:4 (tb 1/14848, 29 fps), optionally with AAC."""
    spec = VideoSpec(frames=frames)
    options = {"movflags": "+faststart"} if path.suffix == ".mp4" else {}
    with av.open(str(path), "w", options=options) as out:
        video = out.add_stream("libx264", rate=spec.rate)
        video.width, video.height, video.pix_fmt = spec.width, spec.height, "yuv444p"
        video.time_base = video.codec_context.time_base = spec.time_base
        video.options = {"preset": "veryfast", "crf": "12"}
        sound = _add_audio(out) if audio else None
        pts = spec.frame_pts()
        for rgb, stamp in zip(
            colour_film_frames(frames, spec.width, spec.height, flicker, seed), pts, strict=True
        ):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv444p")
            frame.pts, frame.time_base = stamp, spec.time_base
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        if sound is not None:
            _write_sine(out, sound, float((pts[-1] + pts[1]) * spec.time_base))
    return path


@pytest.fixture
def make_colour_video(tmp_path: Path) -> Callable[..., Path]:
    """``make_colour_video(name="colour.mp4", frames=24, flicker=8.0, audio=False, seed=0)``."""

    def make(name: str = "colour.mp4", **fields: object) -> Path:
        return write_colour_film(tmp_path / name, **fields)  # type: ignore[arg-type]

    return make


# --- a Ray cluster started apart ------------------------------------------------------------


def session_pids(sid: int) -> list[int]:
    """Every process of a session: a job started with ``start_new_session`` and Ray's own."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getsid(int(entry.name)) == sid:
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def kill_session(process: subprocess.Popen) -> None:
    """SIGKILL a process started with ``start_new_session`` and all its session (Ray's)."""
    for pid in session_pids(process.pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    process.wait()


@pytest.fixture
def ray_head() -> Iterator[str]:
    """A cluster started apart (``ray start --head``, as on a cluster's head node, or a user's
    own Ray beside ours); its address. Killed with all its processes afterwards."""
    import socket
    import time

    pytest.importorskip("ray")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    ray_cli = Path(sys.executable).with_name("ray")
    head = subprocess.Popen(
        [str(ray_cli), "start", "--head", "--block", f"--port={port}", "--num-cpus=2"]
        + ["--include-dashboard=false"],
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        # It listens some seconds after it starts (longer on a loaded machine).
        deadline = time.monotonic() + 120
        while True:
            assert head.poll() is None, "ray start --head exited"
            assert time.monotonic() < deadline, f"ray start --head did not listen on {port}"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=2).close()
                break
            except OSError:
                time.sleep(0.5)
        yield f"127.0.0.1:{port}"
    finally:
        kill_session(head)
        # `ray start` left its address for later `ray.init()` calls: not a dead one
        current = Path("/tmp/ray/ray_current_cluster")
        with contextlib.suppress(OSError):
            if current.read_text().strip().endswith(f":{port}"):
                current.unlink()


@pytest.fixture
def another_local_ray() -> Iterator[None]:
    """Another job's local Ray on this machine (``ray.init()`` in a process of its own), so
    that two Ray instances run and neither is the machine's ``ray start`` cluster."""
    pytest.importorskip("ray")
    code = (
        "import ray, time; ray.init(num_cpus=0, include_dashboard=False); "
        "print('up', flush=True); time.sleep(900)"
    )
    other = subprocess.Popen(
        [sys.executable, "-c", code],
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert other.stdout is not None and other.stdout.readline().strip() == "up"
        yield
    finally:
        kill_session(other)
