"""vidcolor.media.encode: writing keeps the source's timing, geometry and copied streams."""

from __future__ import annotations

import dataclasses
import errno
import logging
import os
from fractions import Fraction
from itertools import pairwise
from pathlib import Path

import av
import numpy as np
import pytest
from conftest import (
    VideoSpec,
    film_facts,
    grey_frame,
    joined_twice,
    mp4_movie_duration,
    packets_of,
    remux,
    same_angle,
    top_level_boxes,
    write_video,
)

from vidcolor.errors import VidcolorError
from vidcolor.media.decode import CopiedPackets, DecodedFrame, VideoInfo, VideoReader
from vidcolor.media.encode import (
    CODECS,
    EncodeSettings,
    VideoWriter,
    choose_pix_fmt,
    codec_profile,
    encoded_size,
)


def copy_film(
    source: Path, target: Path, codec: str = "h264", label: Path | None = None
) -> VideoWriter:
    """Decode ``source`` and write it again, with a colour tint so chroma is present."""
    with VideoReader(source) as reader:
        writer = VideoWriter(
            target,
            reader.info,
            EncodeSettings(codec, preset="veryfast"),
            reader.copied_streams,
            label=label,
        )
        try:
            depth = np.uint16 if writer.high_bit_depth else np.uint8
            for item in reader.frames():
                if isinstance(item, CopiedPackets):
                    writer.copy(item.packets)
                else:
                    writer.write(tinted(item, depth), item.pts)
            writer.close()
        except BaseException:
            writer.abort()
            raise
    return writer


def tinted(frame: DecodedFrame, depth: type = np.uint8) -> np.ndarray:
    """An orange-tinted RGB picture of the frame's lightness."""
    top = np.iinfo(depth).max
    level = frame.luminance / 100.0
    rgb = np.empty((*level.shape, 3), dtype=depth)
    for channel, gain in enumerate((1.0, 0.8, 0.55)):
        rgb[:, :, channel] = np.clip(level * gain * top + 0.5, 0, top).astype(depth)
    return rgb


def increasing(values: list[int]) -> bool:
    return all(a < b for a, b in pairwise(values))


@pytest.mark.parametrize("name", ["cfr29", "ntsc", "vfr", "offset"])
def test_round_trip_keeps_every_timestamp_and_the_rate(sample_films, tmp_path, name):
    source = sample_films[name]
    out = tmp_path / "out.mp4"
    writer = copy_film(source, out)
    before, after = film_facts(source), film_facts(out)
    assert writer.frames_written == len(before.pts)
    assert after.times == before.times
    assert after.duration == before.duration
    assert after.average_rate == before.average_rate
    assert after.chroma > 2


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_last_frame_keeps_its_duration(tmp_path, suffix):
    """The muxer would guess the last frame's duration from the average rate: not so."""
    spec = dataclasses.replace(info(64, 48), time_base=Fraction(1, 1000), end_pts=1000)
    out = tmp_path / f"out{suffix}"
    writer = VideoWriter(out, spec, EncodeSettings("h264", preset="veryfast"), [])
    for index, pts in enumerate([0, 40, 80, 120, 700]):  # the last frame shows for 300 ms
        writer.write(grey_frame(64, 48, index), pts)
    writer.close()
    if suffix == ".mp4":
        assert mp4_movie_duration(out) == 1
    else:
        with av.open(str(out)) as container:
            assert container.duration == 1_000_000


def test_mp4_output_is_browser_ready(sample_films, tmp_path):
    out = tmp_path / "out.mp4"
    copy_film(sample_films["cfr29"], out)
    boxes = top_level_boxes(out)
    assert boxes.index("moov") < boxes.index("mdat"), boxes  # faststart
    facts = film_facts(out)
    assert facts.codec == "h264"
    assert facts.pix_fmt == "yuv420p"


@pytest.mark.parametrize("suffix, codec", [(".mp4", "h264"), (".mkv", "ffv1")])
def test_colours_are_tagged_and_come_back(tmp_path, suffix, codec):
    """The output says which YUV matrix it uses, so players need not guess."""
    spec = info(64, 48)
    out = tmp_path / f"orange{suffix}"
    writer = VideoWriter(out, spec, EncodeSettings(codec, preset="veryfast"), [])
    orange = np.empty((48, 64, 3), np.uint8)
    orange[:] = (220, 120, 30)
    for pts in range(3):
        writer.write(orange, pts)
    writer.close()
    with av.open(str(out)) as container:
        frames = list(container.decode(video=0))
    assert len(frames) == 3
    for frame in frames:
        assert (frame.colorspace, frame.color_range) == (1, 1)  # BT.709, limited range
        assert (frame.color_primaries, frame.color_trc) == (1, 1)
        back = frame.to_ndarray(format="rgb24").astype(int)
        assert np.abs(back - orange).max() <= 4


def test_rotation_and_sample_aspect_ratio_are_written(sample_films, tmp_path):
    copy_film(sample_films["rotated"], tmp_path / "rot.mp4")
    assert same_angle(film_facts(tmp_path / "rot.mp4").rotation, 90)
    copy_film(sample_films["sar"], tmp_path / "sar.mp4")
    assert film_facts(tmp_path / "sar.mp4").sar == Fraction(4, 3)


@pytest.mark.parametrize("degrees", [180, 270])
def test_other_rotations_are_written(make_video, tmp_path, degrees):
    source = make_video(rotation=degrees, frames=6)
    copy_film(source, tmp_path / "out.mp4")
    assert same_angle(film_facts(tmp_path / "out.mp4").rotation, degrees)


ODD_WARNING = (
    "odd frame size 97x55: padded to 98x56 by repeating the edge (4:2:0 needs even sides; "
    "use --codec ffv1 or prores for an exact-size master, or --codec h264-444)"
)


@pytest.mark.parametrize(
    "codec, suffix", [("h264", ".mp4"), ("h265", ".mp4"), ("vp9", ".webm"), ("av1", ".mkv")]
)
def test_odd_size_is_padded_to_even_for_4_2_0(sample_films, tmp_path, caplog, codec, suffix):
    """Browsers, phones and TVs decode 4:2:0 only: one more row and column, copied from the
    edge, beats a 4:4:4 film that does not play."""
    if CODECS[codec].encoder not in av.codecs_available:
        pytest.skip(f"{CODECS[codec].encoder} is not in this FFmpeg build")
    out = tmp_path / f"odd{suffix}"
    with caplog.at_level(logging.WARNING):
        writer = copy_film(sample_films["odd"], out, codec, label=Path("final") / "odd.mp4")
    assert writer.padded and (writer.width, writer.height) == (98, 56)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [f"{Path('final') / 'odd.mp4'}: {ODD_WARNING}"]
    facts = film_facts(out)
    assert (facts.width, facts.height, facts.pix_fmt) == (98, 56, "yuv420p")
    assert len(facts.pts) == 12
    with av.open(str(out)) as container:
        frames = [f.to_ndarray(format="rgb24").astype(int) for f in container.decode(video=0)]
    assert len(frames) == 12
    for rgb in frames:  # the added column and row repeat the picture's edge
        assert np.abs(rgb[:, 97] - rgb[:, 96]).mean() < 6
        assert np.abs(rgb[55] - rgb[54]).mean() < 6


@pytest.mark.parametrize(
    "codec, suffix, pix_fmt",
    [
        ("h264-444", ".mp4", "yuv444p"),
        ("ffv1", ".mkv", "yuv444p"),
        ("prores", ".mov", "yuv444p10le"),
    ],
)
def test_exact_odd_size_on_request(sample_films, tmp_path, caplog, codec, suffix, pix_fmt):
    out = tmp_path / f"odd{suffix}"
    with caplog.at_level(logging.WARNING):
        writer = copy_film(sample_films["odd"], out, codec)
    assert not writer.padded
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    facts = film_facts(out)
    assert (facts.width, facts.height, facts.pix_fmt) == (97, 55, pix_fmt)
    before = film_facts(sample_films["odd"]).times
    assert len(facts.times) == len(before) == 12
    # Matroska counts in milliseconds: each time rounds to the nearest one
    slack = Fraction(1, 2000) if suffix == ".mkv" else 0
    assert all(abs(a - b) <= slack for a, b in zip(facts.times, before, strict=True))


def test_h264_444_keeps_ten_bits(sample_films, tmp_path):
    out = tmp_path / "tenbit.mp4"
    writer = copy_film(sample_films["tenbit"], out, "h264-444")
    assert writer.high_bit_depth
    facts = film_facts(out)
    assert (facts.codec, facts.pix_fmt) == ("h264", "yuv444p10le")
    assert facts.times == film_facts(sample_films["tenbit"]).times


def test_ten_bit_source_into_ffv1_keeps_ten_bits(sample_films, tmp_path):
    out = tmp_path / "master.mkv"
    writer = copy_film(sample_films["tenbit"], out, codec="ffv1")
    assert writer.high_bit_depth
    facts = film_facts(out)
    assert facts.codec == "ffv1"
    assert facts.pix_fmt == "yuv444p10le"
    assert len(facts.pts) == 12
    with av.open(str(out)) as container:
        frames = [f.to_ndarray(format="rgb48le") for f in container.decode(video=0)]
    assert len(frames) == 12
    for rgb in frames:  # levels between the 256 an 8-bit film has
        assert np.any(rgb % 257 != 0)


def test_ffv1_into_mkv_keeps_the_times(sample_films, tmp_path):
    source = sample_films["subtitled"]  # an .mkv: time base 1/1000 on both sides
    out = tmp_path / "master.mkv"
    copy_film(source, out, codec="ffv1")
    assert film_facts(out).times == film_facts(source).times
    assert packets_of(out, "subtitle") == packets_of(source, "subtitle")


def test_audio_packets_are_copied_unchanged(sample_films, tmp_path):
    out = tmp_path / "out.mp4"
    writer = copy_film(sample_films["audio"], out)
    assert [s.type for s in writer.copied.values()] == ["audio"]
    source_packets = packets_of(sample_films["audio"], "audio")
    assert len(source_packets) > 5
    assert packets_of(out, "audio") == source_packets


def test_subtitles_that_mp4_cannot_hold_are_left_out(sample_films, tmp_path):
    out = tmp_path / "out.mp4"
    writer = copy_film(sample_films["subtitled"], out)
    assert writer.copied == {}
    assert packets_of(out, "subtitle") == []
    assert len(film_facts(out).pts) == 12


@pytest.mark.parametrize(
    "codec, suffix",
    [("h264", ".mp4"), ("h265", ".mp4"), ("vp9", ".webm"), ("av1", ".mkv"), ("ffv1", ".mkv")],
)
def test_encoders_keep_quiet(sample_films, tmp_path, capfd, codec, suffix):
    """x265 and SVT-AV1 print their set-up on stderr unless told not to."""
    if CODECS[codec].encoder not in av.codecs_available:
        pytest.skip(f"{CODECS[codec].encoder} is not in this FFmpeg build")
    out = tmp_path / f"out{suffix}"
    copy_film(sample_films["cfr29"], out, codec=codec)
    assert capfd.readouterr().err == ""
    assert len(film_facts(out).pts) == 12


def info(width: int = 96, height: int = 64, depth: int = 8) -> VideoInfo:
    return VideoInfo(
        width,
        height,
        Fraction(1, 25),
        Fraction(25),
        0,
        0.0,
        None,
        depth,
        "h264",
        "yuv420p",
        0,
        2,
        2,
        2,
    )


def test_choose_pix_fmt():
    h264, ffv1, av1 = CODECS["h264"], CODECS["ffv1"], CODECS["av1"]
    assert choose_pix_fmt(h264, info()) == "yuv420p"
    assert choose_pix_fmt(h264, info(depth=10)) == "yuv420p"
    assert choose_pix_fmt(h264, info(97, 55)) == "yuv420p"  # padded to 98x56
    assert choose_pix_fmt(av1, info(97, 55)) == "yuv420p"
    assert choose_pix_fmt(CODECS["h264-444"], info(97, 55)) == "yuv444p"
    assert choose_pix_fmt(CODECS["h264-444"], info(97, 55, depth=10)) == "yuv444p10le"
    assert choose_pix_fmt(ffv1, info(depth=10)) == "yuv444p10le"
    assert choose_pix_fmt(CODECS["h265"], info(depth=10)) == "yuv420p10le"
    assert choose_pix_fmt(CODECS["prores"], info(96, 64)) == "yuv422p10le"
    assert choose_pix_fmt(CODECS["prores"], info(97, 55)) == "yuv444p10le"


def test_encoded_size():
    assert encoded_size("yuv420p", 97, 55) == (98, 56)
    assert encoded_size("yuv420p10le", 96, 55) == (96, 56)
    assert encoded_size("yuv422p10le", 97, 55) == (98, 55)
    assert encoded_size("yuv444p", 97, 55) == (97, 55)


def test_unknown_codec_is_refused():
    with pytest.raises(VidcolorError, match="unknown codec"):
        codec_profile(EncodeSettings("mpeg1"))


@pytest.mark.parametrize(
    "settings, message",
    [
        (EncodeSettings("h264", preset="nonsense"), "unknown preset 'nonsense'; choose one of"),
        (EncodeSettings("h265", preset="nonsense"), "unknown preset 'nonsense'; choose one of"),
        (EncodeSettings("h264", crf=52), "--crf 52 is out of range for h264 (0..51)"),
        (EncodeSettings("h265", crf=60), "--crf 60 is out of range for h265 (0..51)"),
        (EncodeSettings("h264-444", crf=-1), "--crf -1 is out of range for h264-444 (0..51)"),
        (EncodeSettings("vp9", crf=64), "--crf 64 is out of range for vp9 (0..63)"),
        (EncodeSettings("av1", crf=64), "--crf 64 is out of range for av1 (0..63)"),
        (EncodeSettings("ffv1", crf=20), "--crf does not apply to ffv1"),
    ],
)
def test_bad_preset_or_crf_is_one_line_before_any_frame(tmp_path, capfd, settings, message):
    with pytest.raises(VidcolorError) as refused:
        codec_profile(settings)
    assert str(refused.value).startswith(message) and "\n" not in str(refused.value)
    with pytest.raises(VidcolorError, match=message.replace("(", r"\(").replace(")", r"\)")):
        VideoWriter(tmp_path / "out.mkv", info(), settings, [])
    assert capfd.readouterr().err == ""


@pytest.mark.parametrize("codec, suffix, high", [("h265", ".mp4", 51), ("vp9", ".webm", 63)])
def test_crf_is_taken_up_to_the_end_of_its_range(tmp_path, codec, suffix, high):
    for crf in (0, high):
        out = tmp_path / f"crf{crf}{suffix}"
        writer = VideoWriter(out, info(), EncodeSettings(codec, crf=crf, preset="ultrafast"), [])
        for pts in range(3):
            writer.write(grey_frame(96, 64, pts), pts)
        writer.close()
        assert len(film_facts(out).pts) == 3
    with pytest.raises(VidcolorError, match=f"--crf {high + 1} is out of range for {codec}"):
        VideoWriter(tmp_path / f"out{suffix}", info(), EncodeSettings(codec, crf=high + 1), [])


def test_encoder_is_opened_before_the_first_frame(tmp_path, monkeypatch):
    """An option the encoder refuses fails when the writer is made, as one line naming the
    final file, not at the first frame with FFmpeg's traceback."""
    broken = dataclasses.replace(CODECS["h264"], extra=(("tune", "no-such-tune"),))
    monkeypatch.setitem(CODECS, "h264", broken)
    with pytest.raises(VidcolorError) as refused:
        VideoWriter(tmp_path / ".tmp-1.mp4", info(), EncodeSettings("h264"), [], Path("film.mp4"))
    message = str(refused.value)
    assert message.startswith("film.mp4: cannot set up the h264 encoder (")
    assert "\n" not in message and ".tmp-1" not in message


class FailingContainer:
    """An output container whose mux (or close) fails as a full or broken disk does."""

    def __init__(self, container: av.container.OutputContainer, on: str, code: int):
        self._container, self._on, self._code = container, on, code

    def __getattr__(self, name: str) -> object:
        return getattr(self._container, name)

    def _fail(self) -> None:
        if self._code == errno.EIO:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        av.error.err_check(-self._code, "/somewhere/.tmp-2.mp4")

    def mux(self, packets: object) -> None:
        if self._on == "mux":
            self._fail()
        self._container.mux(packets)

    def close(self) -> None:
        if self._on == "close":
            self._fail()
        self._container.close()


@pytest.mark.parametrize("on", ["mux", "close"])
@pytest.mark.parametrize(
    "code, reason", [(errno.ENOSPC, "No space left on device"), (errno.EIO, "Input/output error")]
)
def test_write_errors_are_one_line_naming_the_output(sample_films, tmp_path, on, code, reason):
    with VideoReader(sample_films["audio"]) as reader:
        writer = VideoWriter(
            tmp_path / ".tmp-2.mp4",
            reader.info,
            EncodeSettings("h264", preset="veryfast"),
            reader.copied_streams,
            label=Path("film.mp4"),
        )
        writer.container = FailingContainer(writer.container, on, code)
        with pytest.raises(VidcolorError) as refused:
            for item in reader.frames():
                if isinstance(item, CopiedPackets):
                    writer.copy(item.packets)
                else:
                    writer.write(tinted(item), item.pts)
            writer.close()
        writer.abort()  # what the caller does next: never a second error
    assert str(refused.value) == f"film.mp4: cannot write ({reason})"


@pytest.mark.parametrize("suffix, codec", [(".mp4", "h264"), (".mkv", "ffv1"), (".ts", "h264")])
def test_full_disk_is_one_line(full_disk, tmp_path, suffix, codec):
    source = write_video(tmp_path / "big.mp4", VideoSpec(width=320, height=240, frames=40))
    noise = np.random.default_rng(0).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    with VideoReader(source) as reader:
        writer = VideoWriter(
            full_disk / f".tmp-3{suffix}",
            reader.info,
            EncodeSettings(codec, preset="ultrafast"),
            [],
            label=Path(f"film{suffix}"),
        )
        with pytest.raises(VidcolorError) as refused:
            for item in reader.frames():
                writer.write(np.roll(noise, item.index, axis=1), item.pts)
            writer.close()
        writer.abort()
    assert str(refused.value) == f"film{suffix}: cannot write (No space left on device)"


def test_writer_refuses_a_container_that_cannot_hold_the_codec(tmp_path):
    with pytest.raises(VidcolorError, match="cannot hold"):
        VideoWriter(tmp_path / "out.webm", info(), EncodeSettings("h264"), [])


def test_writer_round_trip_of_synthetic_frames(tmp_path):
    """Frames written with irregular pts in a 1/90000 time base come back exactly."""
    spec = dataclasses.replace(info(64, 48), time_base=Fraction(1, 90000))
    pts = [0, 3003, 6006, 12012, 15015, 21021, 24024, 27027]
    out = tmp_path / "synthetic.mp4"
    writer = VideoWriter(out, spec, EncodeSettings("h264", preset="veryfast"), [])
    for index, value in enumerate(pts):
        writer.write(grey_frame(64, 48, index), value)
    writer.close()
    facts = film_facts(out)
    assert facts.times == [Fraction(p, 90000) for p in pts]
    assert (facts.width, facts.height) == (64, 48)


def test_decoded_frames_are_what_the_writer_takes(sample_films, tmp_path):
    """Every frame the reader gives (index, pts, L of the film's size) goes to the writer as
    it is, and every pts comes back."""
    source = sample_films["vfr"]
    facts = film_facts(source)
    out = tmp_path / "out.mp4"
    with VideoReader(source) as reader:
        frames = [i for i in reader.frames() if isinstance(i, DecodedFrame)]
        writer = VideoWriter(out, reader.info, EncodeSettings(preset="veryfast"), [])
    assert [f.index for f in frames] == list(range(len(facts.pts)))
    assert [f.pts for f in frames] == facts.pts
    for frame in frames:
        assert frame.luminance.dtype == np.float32
        assert frame.luminance.shape == (facts.height, facts.width)
        writer.write(tinted(frame), frame.pts)
    writer.close()
    assert writer.frames_written == len(frames)
    assert film_facts(out).times == facts.times


def test_frames_must_come_in_time_order(tmp_path):
    writer = VideoWriter(tmp_path / "out.mp4", info(64, 48), EncodeSettings(), [], Path("f.mp4"))
    writer.write(grey_frame(64, 48, 0), 5)
    with pytest.raises(VidcolorError, match="f.mp4: frame times must rise"):
        writer.write(grey_frame(64, 48, 1), 5)
    writer.abort()


@pytest.mark.parametrize("suffix", [".ts", ".m2ts", ".MTS", ".mpg"])
def test_mpeg_transport_and_program_streams_hold_h264(sample_films, tmp_path, suffix):
    """PyAV lists only MPEG-2 for these formats; H.264 in .ts/.m2ts/.mts/.mpg is common."""
    source = sample_films["cfr29"]
    out = tmp_path / f"out{suffix}"
    writer = copy_film(source, out)
    assert writer.frames_written == 12
    with VideoReader(out) as reader:
        frames = [i for i in reader.frames() if isinstance(i, DecodedFrame)]
    pts = [f.pts for f in frames]
    assert len(frames) == 12 and increasing(pts)
    assert film_facts(out).codec == "h264"
    if suffix != ".mpg":  # a program stream stamps only some frames; a TS stamps each
        before, after = film_facts(source).times, film_facts(out).times
        steps = [b - a for a, b in pairwise(after)]
        expected = [b - a for a, b in pairwise(before)]
        assert all(abs(s - e) <= Fraction(1, 90000) for s, e in zip(steps, expected, strict=True))
    packet = {".ts": 188, ".m2ts": 192, ".MTS": 188, ".mpg": 2048}[suffix]
    assert out.stat().st_size % packet == 0


def test_audio_is_copied_into_a_transport_stream(sample_films, tmp_path):
    source = sample_films["audio"]
    out = tmp_path / "out.ts"
    writer = copy_film(source, out)
    assert [s.type for s in writer.copied.values()] == ["audio"]
    before, after = packets_of(source, "audio"), packets_of(out, "audio")
    assert len(after) == len(before) > 5
    # the same AAC frames, each behind the ADTS header a transport stream needs
    assert all(
        a.endswith(b) and len(a) - len(b) in (7, 9)
        for (_, a), (_, b) in zip(after, before, strict=True)
    )


def test_audio_that_a_program_stream_cannot_hold_is_left_out(sample_films, tmp_path, caplog):
    out = tmp_path / "out.mpg"
    with caplog.at_level(logging.WARNING):
        writer = copy_film(sample_films["audio"], out)
    assert writer.copied == {}
    assert any("cannot be stored" in r.getMessage() for r in caplog.records)
    assert len(film_facts(out).pts) == 12


def test_h264_in_avi_plays_in_order(sample_films, tmp_path):
    """AVI stores no pts: frames reordered for B-frames would play shuffled."""
    out = tmp_path / "out.avi"
    copy_film(sample_films["cfr29"], out)
    with VideoReader(out) as reader:
        frames = [i for i in reader.frames() if isinstance(i, DecodedFrame)]
    assert len(frames) == 12 and increasing([f.pts for f in frames])
    assert film_facts(out).codec == "h264"


def test_sound_an_avi_cannot_take_is_one_line(tmp_path):
    """AAC from a transport stream (ADTS) does not go into AVI: say so before any frame."""
    source = write_video(tmp_path / "in.ts", VideoSpec(audio=True))
    with VideoReader(source) as reader, pytest.raises(VidcolorError) as refused:
        VideoWriter(
            tmp_path / ".tmp-4.avi",
            reader.info,
            EncodeSettings(),
            reader.copied_streams,
            Path("f.avi"),
        )
    message = str(refused.value)
    assert message.startswith("f.avi: cannot write (") and "try .mkv" in message
    assert "\n" not in message and ".tmp-4" not in message


@pytest.mark.parametrize("source", ["synthetic", "audio sample"])
@pytest.mark.parametrize("suffix", [".mp4", ".mkv", ".ts"])
def test_joined_transport_streams_are_encoded(sample_films, tmp_path, source, suffix):
    """``cat a.ts a.ts``: twice the frames, time running on, the sound of both halves."""
    if source == "synthetic":
        single = write_video(tmp_path / "a.ts", VideoSpec())
    else:
        single = remux(sample_films["audio"], tmp_path / "a.ts")
    joined = joined_twice(single, tmp_path / "c.ts")
    out = tmp_path / f"out{suffix}"
    writer = copy_film(joined, out)
    assert writer.frames_written == 24
    facts = film_facts(out)
    assert len(facts.pts) == 24 and increasing(facts.pts)
    assert len(packets_of(out, "audio")) == 2 * len(packets_of(single, "audio"))


@pytest.mark.parametrize("codec, suffix", [("vp9", ".webm"), ("h265", ".mp4"), ("av1", ".mkv")])
def test_ten_bit_source_into_every_lossy_codec(sample_films, tmp_path, codec, suffix):
    """This FFmpeg's libvpx has no 10-bit formats: vp9 falls back to 8 bits, not to an error."""
    out = tmp_path / f"tenbit{suffix}"
    copy_film(sample_films["tenbit"], out, codec=codec)
    facts = film_facts(out)
    assert len(facts.pts) == 12
    assert facts.pix_fmt in ("yuv420p", "yuv420p10le")
