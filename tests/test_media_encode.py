"""vidcolor.media.encode: writing keeps the source's timing, geometry and copied streams."""

from __future__ import annotations

import dataclasses
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from conftest import (
    film_facts,
    grey_frame,
    mp4_movie_duration,
    packets_of,
    same_angle,
    top_level_boxes,
)

from vidcolor.errors import VidcolorError
from vidcolor.media.decode import CopiedPackets, DecodedFrame, VideoInfo, VideoReader
from vidcolor.media.encode import CODECS, EncodeSettings, VideoWriter, choose_pix_fmt, codec_profile


def copy_film(source: Path, target: Path, codec: str = "h264") -> VideoWriter:
    """Decode ``source`` and write it again, with a colour tint so chroma is present."""
    with VideoReader(source) as reader:
        writer = VideoWriter(
            target, reader.info, EncodeSettings(codec, preset="veryfast"), reader.copied_streams
        )
        depth = np.uint16 if writer.high_bit_depth else np.uint8
        top = np.iinfo(depth).max
        for item in reader.frames():
            if isinstance(item, CopiedPackets):
                writer.copy(item.packets)
                continue
            rgb = np.empty((reader.info.height, reader.info.width, 3), dtype=depth)
            level = item.luminance / 100.0
            for channel, gain in enumerate((1.0, 0.8, 0.55)):
                rgb[:, :, channel] = np.clip(level * gain * top + 0.5, 0, top).astype(depth)
            writer.write(rgb, item.pts)
        writer.close()
    return writer


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
        frame = next(container.decode(video=0))
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


def test_odd_size_is_kept_with_full_chroma(sample_films, tmp_path):
    out = tmp_path / "odd.mp4"
    copy_film(sample_films["odd"], out)
    facts = film_facts(out)
    assert (facts.width, facts.height) == (97, 55)
    assert facts.pix_fmt == "yuv444p"


def test_ten_bit_source_into_ffv1_keeps_ten_bits(sample_films, tmp_path):
    out = tmp_path / "master.mkv"
    writer = copy_film(sample_films["tenbit"], out, codec="ffv1")
    assert writer.high_bit_depth
    facts = film_facts(out)
    assert facts.codec == "ffv1"
    assert facts.pix_fmt == "yuv444p10le"
    assert len(facts.pts) == 12


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
    assert choose_pix_fmt(h264, info(97, 55)) == "yuv444p"
    assert choose_pix_fmt(ffv1, info(depth=10)) == "yuv444p10le"
    assert choose_pix_fmt(CODECS["h265"], info(depth=10)) == "yuv420p10le"
    with pytest.raises(VidcolorError, match="odd"):
        choose_pix_fmt(av1, info(97, 55))


def test_unknown_codec_is_refused():
    with pytest.raises(VidcolorError, match="unknown codec"):
        codec_profile(EncodeSettings("mpeg1"))


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


def test_decoded_frame_type_is_what_writer_gets(sample_films):
    with VideoReader(sample_films["cfr29"]) as reader:
        first = next(i for i in reader.frames() if isinstance(i, DecodedFrame))
    assert first.index == 0 and first.pts == 0
