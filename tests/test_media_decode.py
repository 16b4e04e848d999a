"""vidcolor.media.decode: the film's geometry and timing, frames as L, copied packets in order."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest
from conftest import film_facts, packets_of, same_angle

from vidcolor.errors import VidcolorError
from vidcolor.media.decode import CopiedPackets, DecodedFrame, VideoReader


def decoded(reader: VideoReader) -> list[DecodedFrame]:
    return [item for item in reader.frames() if isinstance(item, DecodedFrame)]


def test_info_of_a_plain_film(sample_films):
    with VideoReader(sample_films["cfr29"]) as reader:
        info = reader.info
    assert (info.width, info.height) == (96, 64)
    assert info.time_base == Fraction(1, 14848)
    assert info.average_rate == 29
    assert info.frame_count == 12
    assert info.rotation == 0
    assert not info.sample_aspect_ratio or info.sample_aspect_ratio == 1
    assert info.bit_depth == 8
    assert info.codec == "h264"
    assert info.pix_fmt == "yuv420p"


def test_sample_films_have_b_frames(sample_films):
    """The fixtures keep libx264's B-frames: packets arrive out of display order."""
    with av.open(str(sample_films["cfr29"])) as container:
        stamps = [p.pts for p in container.demux(video=0) if p.size > 0]
    assert stamps != sorted(stamps)


def test_info_of_ntsc_film(sample_films):
    with VideoReader(sample_films["ntsc"]) as reader:
        assert reader.info.time_base == Fraction(1, 30000)
        assert reader.info.average_rate == Fraction(30000, 1001)


def test_info_rotation_sar_depth_and_odd_size(sample_films):
    with VideoReader(sample_films["rotated"]) as reader:
        assert same_angle(reader.info.rotation, 90)
        # the stored picture is not rotated: width and height are those of the coded frames
        assert (reader.info.width, reader.info.height) == (96, 64)
    with VideoReader(sample_films["sar"]) as reader:
        assert reader.info.sample_aspect_ratio == Fraction(4, 3)
    with VideoReader(sample_films["tenbit"]) as reader:
        assert reader.info.bit_depth == 10
        assert reader.info.pix_fmt == "yuv420p10le"
    with VideoReader(sample_films["odd"]) as reader:
        assert (reader.info.width, reader.info.height) == (97, 55)


@pytest.mark.parametrize("name", ["cfr29", "ntsc", "vfr", "offset", "tenbit", "odd"])
def test_frames_carry_every_pts_in_order(sample_films, name):
    facts = film_facts(sample_films[name])
    with VideoReader(sample_films[name]) as reader:
        frames = decoded(reader)
        assert reader.info.time_base == facts.time_base
    assert [f.index for f in frames] == list(range(len(facts.pts)))
    assert [f.pts for f in frames] == facts.pts
    for frame in frames:
        assert frame.luminance.dtype == np.float32
        assert frame.luminance.shape == (facts.height, facts.width)
        assert frame.luminance.min() >= 0.0 and frame.luminance.max() <= 100.0


def test_frames_hidden_by_an_edit_list_are_not_mistaken_for_truncation(sample_films):
    film = sample_films["edit_list"]
    facts = film_facts(film)
    with VideoReader(film) as reader:
        assert reader.info.frame_count == 24  # stored; the first is never shown
        frames = decoded(reader)
    assert [f.pts for f in frames] == facts.pts
    assert len(frames) == 23 and frames[0].pts == 0


def test_ten_bit_film_is_read_with_more_than_eight_bits(sample_films):
    with VideoReader(sample_films["tenbit"]) as reader:
        lum = decoded(reader)[0].luminance
    with VideoReader(sample_films["cfr29"]) as reader:
        lum8 = decoded(reader)[0].luminance
    # same picture: about the same lightness, but finer steps than 8 bits can give
    assert abs(float(lum.mean()) - float(lum8.mean())) < 1.0
    assert len(np.unique(lum)) > len(np.unique(lum8))


@pytest.mark.parametrize("name", ["cfr29", "ntsc", "vfr", "offset", "gop", "gop_mkv"])
@pytest.mark.parametrize("start", [1, 5, 11])
def test_start_frame(sample_films, name, start):
    full = film_facts(sample_films[name]).pts
    with VideoReader(sample_films[name], start_frame=start) as reader:
        frames = decoded(reader)
    assert frames[0].index == start
    assert frames[0].pts == full[start]
    assert [f.pts for f in frames] == full[start:]
    assert [f.index for f in frames] == list(range(start, len(full)))


def test_start_frame_beyond_the_end_yields_nothing(sample_films):
    with VideoReader(sample_films["cfr29"], start_frame=40) as reader:
        assert decoded(reader) == []


def test_frames_can_be_iterated_twice(sample_films):
    with VideoReader(sample_films["vfr"]) as reader:
        first = [f.pts for f in decoded(reader)]
        second = [f.pts for f in decoded(reader)]
    assert first == second == film_facts(sample_films["vfr"]).pts


def test_audio_packets_travel_with_the_frames(sample_films):
    with VideoReader(sample_films["audio"]) as reader:
        assert [s.type for s in reader.copied_streams] == ["audio"]
        items = list(reader.frames())
    packets = [p for item in items if isinstance(item, CopiedPackets) for p in item.packets]
    expected = packets_of(sample_films["audio"], "audio")
    assert [(p.pts * p.time_base, bytes(p)) for p in packets] == expected
    assert sum(isinstance(item, DecodedFrame) for item in items) == 12


def test_subtitle_stream_is_copied(sample_films):
    with VideoReader(sample_films["subtitled"]) as reader:
        assert [s.type for s in reader.copied_streams] == ["subtitle"]
        items = list(reader.frames())
    texts = [bytes(p) for item in items if isinstance(item, CopiedPackets) for p in item.packets]
    assert texts == [b"First line", b"Second line"]


def test_truncated_film_with_index_is_reported(make_video):
    film = make_video("whole.mp4", frames=30, width=160, height=96, faststart=True)
    cut = film.with_name("cut.mp4")
    data = film.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(VidcolorError, match="cut.mp4"), VideoReader(cut) as reader:
        decoded(reader)


def test_file_without_video_stream_is_refused(tmp_path):
    srt = tmp_path / "only.srt"
    srt.write_text("1\n00:00:00,000 --> 00:00:01,000\nhello\n")
    with pytest.raises(VidcolorError, match="no video stream"):
        VideoReader(srt)
