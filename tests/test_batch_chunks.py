"""Films in chunks: the frame index, reading a frame range, and chunked == one-pass output."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from conftest import VideoSpec, film_facts, joined_twice, packets_of, remux, write_video

from vidcolor.api import colorize_video
from vidcolor.batch.chunks import Chunk, chunk_suffix, colorize_chunk, plan_chunks
from vidcolor.errors import VidcolorError
from vidcolor.media.decode import CopiedPackets, DecodedFrame, VideoReader
from vidcolor.media.index import build_film_index
from vidcolor.media.join import join_chunks
from vidcolor.options import EncodeSettings, RunOptions

# 2.9 s at 29 fps with sound, keyframes every 12 frames (B-frames between)
FILM = VideoSpec(width=96, height=64, frames=84, audio=True, options={"g": "12"})


@pytest.fixture(scope="module")
def film(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_video(tmp_path_factory.mktemp("chunks") / "film.mp4", FILM)


def test_index_lists_every_frame_and_keyframe(film):
    index = build_film_index(film)
    assert list(index.frame_pts) == film_facts(film).pts
    assert index.keyframes == tuple(range(0, FILM.frames, 12))
    assert index.splittable
    assert index.keyframes_between(11, 25) == (12, 24)
    assert index.nearest_pts(index.frame_pts[5] + Fraction(1, 3)) == index.frame_pts[5]


def test_index_of_joined_recordings_is_not_splittable(film, tmp_path):
    single = remux(film, tmp_path / "one.ts")
    joined = build_film_index(joined_twice(single, tmp_path / "two.ts"))
    assert not joined.splittable
    assert joined.frame_count == 2 * FILM.frames


def test_reader_gives_a_frame_range_with_its_sound(film):
    index = build_film_index(film)
    with VideoReader(film, 30, end_frame=50, index=index) as reader:
        items = list(reader.frames())
    frames = [item for item in items if isinstance(item, DecodedFrame)]
    assert [f.index for f in frames] == list(range(30, 50))
    assert [f.pts for f in frames] == list(index.frame_pts[30:50])
    sound = [p for item in items if isinstance(item, CopiedPackets) for p in item.packets]
    start = index.frame_pts[30] * index.time_base
    assert sound and all(p.pts * p.time_base >= start for p in sound)


def test_copied_packets_are_the_ones_a_one_pass_read_gives(film):
    with VideoReader(film) as reader:
        from_frames = [
            (p.pts, bytes(p))
            for item in reader.frames()
            if isinstance(item, CopiedPackets)
            for p in item.packets
        ]
        alone = [(p.pts, bytes(p)) for p in reader.copied_packets()]
    assert from_frames and alone == from_frames


def test_plan_cuts_at_keyframes_with_warmup():
    index = build_film_index_of(frames=290, keyframes=range(0, 290, 25))
    options = RunOptions()
    chunks = plan_chunks(index, 2.5, options)
    assert chunks[0].first == 0 and chunks[-1].end == 290
    assert all(a.end == b.first for a, b in zip(chunks, chunks[1:], strict=False))
    assert all(c.first in index.keyframes for c in chunks)
    assert all(c.read_first == max(0, c.first - options.temporal_warmup) for c in chunks)
    assert all(c.end < c.read_end <= 290 for c in chunks[:-1])
    assert len(chunks) == 4
    bare = plan_chunks(index, 2.5, options.with_(temporal=False))
    assert all((c.read_first, c.read_end) == (c.first, c.end) for c in bare)


def test_short_or_unsplittable_film_is_one_chunk():
    index = build_film_index_of(frames=100, keyframes=[0, 50])
    assert len(plan_chunks(index, 3.0, RunOptions())) == 1  # 3.4 s < 1.5 chunks
    messy = build_film_index_of(frames=900, keyframes=[0, 300, 600], splittable=False)
    assert plan_chunks(messy, 3.0, RunOptions()) == [Chunk(0, 900, 0, 900)]


def build_film_index_of(frames: int, keyframes, splittable: bool = True):
    from vidcolor.media.index import FilmIndex

    pts = tuple(512 * k for k in range(frames))
    return FilmIndex(pts, tuple(keyframes), Fraction(1, 14848), None, splittable)


def _colorize_in_chunks(film, output, engine, options, seconds) -> list[Chunk]:
    index = build_film_index(film)
    chunks = plan_chunks(index, seconds, options)
    parts = []
    for chunk in chunks:
        part = output.with_name(f"{output.stem}-{chunk.name}{chunk_suffix(options.encode.codec)}")
        assert colorize_chunk(film, index, chunk, part, engine, options) == chunk.frames
        parts.append(part)
    assert join_chunks(film, parts, output, index, options.encode) == FILM.frames
    return chunks


def _frames(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24").astype(np.int16) for f in container.decode(video=0)]


def test_chunked_film_equals_one_pass_film(film, tmp_path, engine):
    options = RunOptions(overwrite=True)
    one = colorize_video(film, tmp_path / "one.mp4", options, engine=engine).output
    chunks = _colorize_in_chunks(film, tmp_path / "chunked.mp4", engine, options, 0.8)
    assert len(chunks) >= 3
    a, b = film_facts(one), film_facts(tmp_path / "chunked.mp4")
    assert b.pts == a.pts and b.time_base == a.time_base
    assert b.duration == a.duration and b.average_rate == a.average_rate
    assert packets_of(tmp_path / "chunked.mp4", "audio") == packets_of(one, "audio")
    assert packets_of(one, "audio")
    # both are H.264 from the same colour: only the encoder's choices differ
    pairs = zip(_frames(one), _frames(tmp_path / "chunked.mp4"), strict=True)
    diff = [np.abs(x - y).mean() for x, y in pairs]
    assert max(diff) < 4


def test_chunked_colour_equals_one_pass_colour_at_the_seams(film, tmp_path, engine):
    """Lossless FFV1 shows the colour itself: the warm-up rebuilds the filter's state."""
    options = RunOptions(overwrite=True, encode=EncodeSettings(codec="ffv1"))
    one = colorize_video(film, tmp_path / "one.mkv", options, engine=engine).output
    chunks = _colorize_in_chunks(film, tmp_path / "chunked.mkv", engine, options, 0.8)
    whole, parts = _frames(one), _frames(tmp_path / "chunked.mkv")
    assert len(parts) == len(whole) == FILM.frames
    seams = [c.first for c in chunks[1:]]
    for k, (x, y) in enumerate(zip(whole, parts, strict=True)):
        assert np.abs(x - y).mean() < 0.05, f"frame {k} (seams at {seams})"
        assert np.abs(x - y).max() <= 4
    assert packets_of(tmp_path / "chunked.mkv", "audio") == packets_of(one, "audio")


def test_join_refuses_a_missing_chunk(film, tmp_path, engine):
    options = RunOptions(overwrite=True)
    index = build_film_index(film)
    chunks = plan_chunks(index, 0.8, options)
    parts = []
    for chunk in chunks[:2]:
        part = tmp_path / f"{chunk.name}.mp4"
        colorize_chunk(film, index, chunk, part, engine, options)
        parts.append(part)
    with pytest.raises(VidcolorError, match="frames"):
        join_chunks(film, parts, tmp_path / "out.mp4", index, options.encode)
    assert not (tmp_path / "out.mp4").exists()


@pytest.mark.parametrize("container", [".mkv", ".mov"])
def test_chunked_film_in_other_containers_equals_one_pass(film, tmp_path, engine, container):
    source = remux(film, tmp_path / f"film{container}")
    options = RunOptions(overwrite=True)
    one = colorize_video(source, tmp_path / f"one{container}", options, engine=engine).output
    output = tmp_path / f"chunked{container}"
    index = build_film_index(source)
    chunks = plan_chunks(index, 0.8, options)
    assert len(chunks) >= 3
    parts = []
    for chunk in chunks:
        parts.append(tmp_path / f"{chunk.name}{chunk_suffix(options.encode.codec)}")
        colorize_chunk(source, index, chunk, parts[-1], engine, options)
    join_chunks(source, parts, output, index, options.encode)
    assert film_facts(output).pts == film_facts(one).pts
    assert packets_of(output, "audio") == packets_of(one, "audio")


def test_transport_streams_are_read_in_one_pass(film, tmp_path):
    index = build_film_index(remux(film, tmp_path / "film.ts"))
    assert not index.splittable
    assert len(plan_chunks(index, 0.8, RunOptions())) == 1
