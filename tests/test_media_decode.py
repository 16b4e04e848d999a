"""vidcolor.media.decode: the film's geometry and timing, frames as L, copied packets in order."""

from __future__ import annotations

import logging
from fractions import Fraction
from itertools import pairwise

import av
import numpy as np
import pytest
from conftest import (
    VideoSpec,
    film_facts,
    grey_frame,
    joined_twice,
    packets_of,
    remux,
    same_angle,
    write_avi_with_null_frame,
    write_declaring_size,
    write_frames_of_two_sizes,
    write_video,
    write_with_cover,
)

from vidcolor.color import luminance
from vidcolor.errors import VidcolorError
from vidcolor.media.decode import CopiedPackets, DecodedFrame, VideoReader
from vidcolor.options import DEFAULT_MAX_PIXELS


def decoded(reader: VideoReader) -> list[DecodedFrame]:
    return [item for item in reader.frames() if isinstance(item, DecodedFrame)]


def increasing(values: list[int]) -> bool:
    return all(a < b for a, b in pairwise(values))


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
        frames = decoded(reader)
    with VideoReader(sample_films["cfr29"]) as reader:
        frames8 = decoded(reader)
    assert len(frames) == len(frames8) == 12
    for ten, eight in zip(frames, frames8, strict=True):
        # same picture: about the same lightness, but finer steps than 8 bits can give
        assert abs(float(ten.luminance.mean()) - float(eight.luminance.mean())) < 1.0
        assert len(np.unique(ten.luminance)) > len(np.unique(eight.luminance))


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
    kinds = [type(item) for item in items]
    assert kinds.count(DecodedFrame) == 12
    # interleaved with the frames, not gathered at the end: the encoder muxes them as it goes
    assert kinds.index(CopiedPackets) < len(kinds) - 1 - kinds[::-1].index(DecodedFrame)


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


def test_file_with_only_cover_art_has_no_video(tmp_path):
    """An attached picture (album or film cover) is one still in a video stream, not a film."""
    song = write_with_cover(tmp_path / "song.mp4", film=False)
    with pytest.raises(VidcolorError) as refused:
        VideoReader(song)
    assert str(refused.value) == f"{song}: has no video stream (only cover art)"
    film = write_with_cover(tmp_path / "film.mp4", film=True)
    with VideoReader(film) as reader:
        assert reader.info.codec == "h264"
        assert [s.type for s in reader.copied_streams] == ["audio"]
        assert [f.pts for f in decoded(reader)] == film_facts(film).pts


def test_frame_size_over_the_limit_is_refused_before_decoding(sample_films, tmp_path):
    bomb = write_declaring_size(tmp_path / "bomb.avi", 12000, 9000)
    assert DEFAULT_MAX_PIXELS < 12000 * 9000
    with pytest.raises(VidcolorError) as refused:
        VideoReader(bomb)
    assert str(refused.value) == (
        f"{bomb}: 12000x9000 frames are more than the limit of {DEFAULT_MAX_PIXELS} pixels "
        "(use --max-pixels to raise it)"
    )
    film = sample_films["cfr29"]  # 96x64
    with pytest.raises(VidcolorError, match="96x64 frames are more than the limit of 6143"):
        VideoReader(film, max_pixels=96 * 64 - 1)
    with VideoReader(film, max_pixels=96 * 64) as reader:
        assert len(decoded(reader)) == 12


def test_avi_null_frames_are_not_mistaken_for_truncation(tmp_path):
    """ffmpeg writes a zero-size chunk for a dropped or repeated frame: it counts in the AVI
    header, but no picture comes from it."""
    film = write_avi_with_null_frame(tmp_path / "drop.avi", frames=30, dropped=3)
    with av.open(str(film)) as container:
        stream = container.streams.video[0]
        assert stream.frames == 31  # the header counts the null frame ...
        assert len(stream.index_entries) == 30  # ... which holds no picture
    with VideoReader(film) as reader:
        frames = decoded(reader)
    assert len(frames) == 30
    assert [f.pts for f in frames] == film_facts(film).pts
    assert increasing([f.pts for f in frames])
    # a cut AVI (its index is at the end) is still reported
    cut = tmp_path / "cut.avi"
    cut.write_bytes(film.read_bytes()[: film.stat().st_size * 2 // 3])
    with pytest.raises(VidcolorError, match="cut.avi: video is truncated"), VideoReader(cut) as r:
        decoded(r)


@pytest.mark.parametrize("suffix", [".mkv", ".ts", ".m2ts"])
def test_film_without_frame_count_that_ends_early_is_reported(make_video, caplog, suffix):
    """Matroska and MPEG-TS list no frame count: a cut film must still not pass as whole."""
    whole = make_video(f"whole{suffix}", frames=60, width=160, height=96, audio=True)
    with VideoReader(whole) as reader:
        assert len(decoded(reader)) == 60
    cut = whole.with_name(f"cut{suffix}")
    cut.write_bytes(whole.read_bytes()[:20000])
    with pytest.raises(VidcolorError) as refused, VideoReader(cut) as reader:
        decoded(reader)
    message = str(refused.value)
    assert message.startswith(f"{cut}: video is truncated or damaged")
    assert "\n" not in message and "--allow-truncated" in message
    caplog.clear()
    with caplog.at_level(logging.WARNING), VideoReader(cut, allow_truncated=True) as reader:
        frames = decoded(reader)
    assert 0 < len(frames) < 60
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and warnings[0].startswith(f"{cut}: video is truncated")


def test_transport_stream_cut_inside_its_last_frame_is_reported(make_video):
    """Cut on a packet boundary, a TS is whole by its size: its last frame tells."""
    whole = make_video("whole.ts", frames=60, width=160, height=96)
    data = whole.read_bytes()
    cut = whole.with_name("cut.ts")
    for packets in range(60, len(data) // 188):
        cut.write_bytes(data[: packets * 188])
        with av.open(str(cut)) as container:
            frames = list(container.decode(video=0))
        if frames and frames[-1].is_corrupt:
            break
    else:
        pytest.skip("this FFmpeg flags no cut frame as corrupt")
    with pytest.raises(VidcolorError, match="last frame is incomplete"), VideoReader(cut) as r:
        decoded(r)


def test_frames_that_change_size_are_scaled_to_the_first(tmp_path, caplog):
    film = write_frames_of_two_sizes(tmp_path / "two.mkv", ((96, 64), (80, 48)), per_size=4)
    with caplog.at_level(logging.WARNING), VideoReader(film) as reader:
        frames = decoded(reader)
        assert (reader.info.width, reader.info.height) == (96, 64)
    assert [f.pts for f in frames] == [i * 40 for i in range(8)]
    assert all(f.luminance.shape == (64, 96) for f in frames)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "80x48" in warnings[0] and "96x64" in warnings[0] and str(film) in warnings[0]
    # scaled, not cropped or stretched oddly: the picture matches its own source, enlarged
    for frame in frames[4:]:
        source = luminance(grey_frame(80, 48, frame.pts // 40))
        assert abs(float(frame.luminance.mean()) - float(source.mean())) < 2.0


@pytest.mark.parametrize("source", ["synthetic", "audio sample"])
def test_joined_transport_streams_play_on(sample_films, tmp_path, caplog, source):
    """``cat a.ts a.ts > c.ts``: the clock restarts halfway; time must run on, sound with it."""
    if source == "synthetic":
        single = write_video(tmp_path / "a.ts", VideoSpec())
    else:
        single = remux(sample_films["audio"], tmp_path / "a.ts")
    joined = joined_twice(single, tmp_path / "c.ts")
    with VideoReader(single) as reader:
        once = decoded(reader)
    with caplog.at_level(logging.WARNING), VideoReader(joined) as reader:
        items = list(reader.frames())
        step = reader.info.frame_step
    frames = [item for item in items if isinstance(item, DecodedFrame)]
    pts = [f.pts for f in frames]
    assert len(frames) == 2 * len(once) == 24
    assert [f.index for f in frames] == list(range(24))
    assert increasing(pts)
    # the second half keeps its own timing, one frame after the first half's end
    assert pts[:12] == [f.pts for f in once]
    assert pts[12] == pts[11] + step
    assert [p - pts[12] for p in pts[12:]] == [p - pts[0] for p in pts[:12]]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "jump back" in warnings[0]
    packets = [p for item in items if isinstance(item, CopiedPackets) for p in item.packets]
    if source == "audio sample":
        assert len(packets) == 2 * len(packets_of(single, "audio"))
        dts = [p.dts for p in packets]
        assert increasing(dts)
        # the sound moved with the pictures: the second half starts near the frames' restart
        second = packets[len(packets) // 2]
        assert abs((second.pts - packets[0].pts) - (pts[12] - pts[0])) < 2 * step
