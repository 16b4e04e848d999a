"""Join a film's colourised chunks into one film by copying packets, with the source's sound.

Chunks of one film are colourised apart (on several workers) and encoded with the same
settings, each from a keyframe of its own, so their packets follow each other into one stream
without re-encoding. The source's audio and subtitle packets are demuxed once more and muxed
unchanged, exactly as a one-pass run muxes them. Every frame's display duration comes from
the film index, so the joined film's timing is the one-pass film's.
"""

from __future__ import annotations

import contextlib
import heapq
from collections.abc import Iterator, Sequence
from fractions import Fraction
from pathlib import Path

import av

from vidcolor.atomic import atomic_output
from vidcolor.errors import VidcolorError
from vidcolor.media.decode import VideoInfo, VideoReader
from vidcolor.media.encode import PacketJoiner
from vidcolor.media.index import FilmIndex
from vidcolor.options import EncodeSettings


def join_chunks(
    source: Path,
    chunks: Sequence[Path],
    output: Path,
    index: FilmIndex,
    settings: EncodeSettings,
    *,
    label: Path | None = None,
    max_pixels: int | None = None,
) -> int:
    """Write ``output`` from the chunk films (in order) and the source's copied streams.

    Returns the frames written; a chunk that does not fit (another codec set-up, frames
    missing) is an error naming it, never a film with a hole.
    """
    if not chunks:
        raise VidcolorError(f"{source}: no chunks to join")
    options = {} if max_pixels is None else {"max_pixels": max_pixels}
    with contextlib.ExitStack() as stack:
        reader = stack.enter_context(VideoReader(source, index=index, **options))
        opened = [stack.enter_context(_open_chunk(path)) for path in chunks]
        template = opened[0].streams.video[0]
        for path, container in zip(chunks, opened, strict=True):
            _check_same_setup(path, container.streams.video[0], template)
        tmp = stack.enter_context(atomic_output(output, overwrite=True))
        joiner = PacketJoiner(
            tmp, reader.info, settings, reader.copied_streams, template, label=label or output
        )
        try:
            durations = _display_durations(index, reader.info)
            video = _video_packets(chunks, opened)
            sound = reader.copied_packets()
            for packet in heapq.merge(video, sound, key=_decode_seconds):
                if packet.stream.type == "video":
                    joiner.mux_frame(packet, _duration_in(packet, durations, index))
                else:
                    joiner.copy([packet])
            if joiner.frames_written != index.frame_count:
                raise VidcolorError(
                    f"{label or output}: the chunks hold {joiner.frames_written} frames, "
                    f"the film {index.frame_count}"
                )
            last = index.frame_pts[-1]
            joiner.finish(index.frame_pts[0], last + durations[last])
        except BaseException:
            joiner.abort()
            raise
    return joiner.frames_written


def _open_chunk(path: Path) -> av.container.InputContainer:
    try:
        container = av.open(str(path), metadata_errors="ignore")
    except (av.FFmpegError, OSError) as exc:
        raise VidcolorError(f"{path}: cannot open chunk ({exc})") from exc
    if not container.streams.video:
        container.close()
        raise VidcolorError(f"{path}: chunk holds no video")
    return container


def _check_same_setup(path: Path, stream: av.stream.Stream, template: av.stream.Stream) -> None:
    """Packets of one stream must decode with one set-up (codec, size, parameter sets)."""
    mine, theirs = stream.codec_context, template.codec_context
    same = (
        mine.name == theirs.name
        and (mine.width, mine.height) == (theirs.width, theirs.height)
        and bytes(mine.extradata or b"") == bytes(theirs.extradata or b"")
    )
    if not same:
        raise VidcolorError(f"{path}: chunk encoded with another set-up than the first")


def _video_packets(paths: Sequence[Path], containers: list) -> Iterator[av.Packet]:
    """Every chunk's video packets in turn; their decode times must keep rising."""
    last: Fraction | None = None
    for path, container in zip(paths, containers, strict=True):
        stream = container.streams.video[0]
        try:
            for packet in container.demux(stream):
                if packet.size == 0:
                    continue
                at = _decode_seconds(packet)
                if last is not None and at <= last:
                    raise VidcolorError(f"{path}: chunk overlaps the one before it")
                last = at
                yield packet
        except av.FFmpegError as exc:
            raise VidcolorError(f"{path}: chunk is damaged ({exc})") from exc


def _display_durations(index: FilmIndex, info: VideoInfo) -> dict[int, int]:
    """How long each frame shows, by pts: to the next frame; the last as the source says,
    else as long as the one before (as ``VideoWriter`` ends a film written in one pass)."""
    stamps = index.frame_pts
    durations = {pts: after - pts for pts, after in zip(stamps, stamps[1:], strict=False)}
    last = stamps[-1]
    if info.end_pts is not None and info.end_pts > last:
        durations[last] = info.end_pts - last
    else:
        durations[last] = durations[stamps[-2]] if len(stamps) > 1 else info.frame_step
    return durations


def _duration_in(packet: av.Packet, durations: dict[int, int], index: FilmIndex) -> int:
    """The frame's duration in the packet's own time base. A chunk file may store a coarser
    one (Matroska: milliseconds): its frame is then the one whose pts is nearest."""
    time_base = index.time_base
    if packet.time_base == time_base and packet.pts in durations:
        return durations[packet.pts]
    pts = index.nearest_pts(packet.pts * packet.time_base / time_base)
    return max(1, round(durations[pts] * time_base / packet.time_base))


def _decode_seconds(packet: av.Packet) -> Fraction:
    stamp = packet.dts if packet.dts is not None else packet.pts
    return Fraction(stamp or 0) * (packet.time_base or 1)
