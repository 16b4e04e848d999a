"""vidcolor.media.probe: the kind of a file comes from its content, not its name."""

from __future__ import annotations

import io
import os
import shutil
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from conftest import IMAGE_KINDS
from PIL import Image

from vidcolor.errors import VidcolorError
from vidcolor.media.probe import MediaKind, check_readable, detect_kind


@pytest.mark.parametrize("kind", sorted(IMAGE_KINDS))
def test_every_still_is_an_image(make_image, kind):
    assert detect_kind(make_image(kind)) is MediaKind.IMAGE


@pytest.mark.parametrize("name", ["cfr29", "vfr", "tenbit", "odd", "audio", "subtitled"])
def test_every_film_is_a_video(sample_films, name):
    assert detect_kind(sample_films[name]) is MediaKind.VIDEO


def test_png_named_mp4_is_an_image(make_image, tmp_path):
    png = make_image("rgb_png")
    disguised = png.rename(tmp_path / "really-a-picture.mp4")
    assert detect_kind(disguised) is MediaKind.IMAGE


def test_video_named_png_is_a_video(sample_films, tmp_path):
    disguised = tmp_path / "really-a-film.png"
    shutil.copy(sample_films["cfr29"], disguised)
    assert detect_kind(disguised) is MediaKind.VIDEO


@pytest.mark.parametrize(
    "name, message",
    [
        ("notes.mp4", "not a readable video"),
        ("notes.png", "not a readable image"),
        ("notes.xyz", "neither a video nor an image"),
    ],
)
def test_text_file_is_refused(tmp_path, name, message):
    text = tmp_path / name
    text.write_text("These are not the frames you are looking for.\n" * 20)
    with pytest.raises(VidcolorError, match=message):
        detect_kind(text)


def test_missing_empty_and_folder_are_refused(tmp_path):
    with pytest.raises(VidcolorError, match="no such file"):
        detect_kind(tmp_path / "missing.mp4")
    empty = tmp_path / "empty.mp4"
    empty.touch()
    with pytest.raises(VidcolorError, match="empty"):
        detect_kind(empty)
    with pytest.raises(VidcolorError, match="folder"):
        detect_kind(tmp_path)


def test_check_readable_accepts_files_and_folders(make_image, tmp_path):
    odd = tmp_path / os.fsdecode(b"not-utf8-\xff.jpg")
    odd.write_bytes(make_image("grey_jpeg").read_bytes())
    folder = tmp_path / "sub"
    folder.mkdir()
    for readable in (make_image("grey_jpeg"), odd, tmp_path, folder):
        assert check_readable(readable) is None
    # what it refuses, beside: a missing path, an empty file, something that is not a file
    with pytest.raises(VidcolorError, match="no such file or folder"):
        check_readable(tmp_path / "missing.jpg")
    (tmp_path / "empty.jpg").touch()
    with pytest.raises(VidcolorError, match="file is empty"):
        check_readable(tmp_path / "empty.jpg")
    os.mkfifo(tmp_path / "pipe.jpg")
    with pytest.raises(VidcolorError, match="not a regular file"):
        check_readable(tmp_path / "pipe.jpg")
    with pytest.raises(VidcolorError) as refused:  # one line, whatever the name holds
        check_readable(tmp_path / "no\nsuch.jpg")
    assert str(refused.value) == f"{tmp_path}/no\\nsuch.jpg: no such file or folder"


def test_truncated_film_without_index_is_refused(make_video):
    film = make_video("whole.mp4", frames=20, faststart=False)
    cut = film.with_name("cut.mp4")
    data = film.read_bytes()
    cut.write_bytes(data[: len(data) // 2])  # the index (moov) sat at the end: gone
    with pytest.raises(VidcolorError, match="not a readable video"):
        detect_kind(cut)


def test_kind_does_not_depend_on_case_of_extension(sample_films, tmp_path):
    upper = Path(shutil.copy(sample_films["cfr29"], tmp_path / "FILM.MP4"))
    assert detect_kind(upper) is MediaKind.VIDEO


# --- animations and cover art ---------------------------------------------------------------


def grey_pictures(count: int) -> list[Image.Image]:
    return [
        Image.fromarray(np.full((16, 24), 30 + 90 * i, np.uint8)).convert("RGB")
        for i in range(count)
    ]


@pytest.mark.parametrize("name", ["anim.gif", "anim.png", "anim.webp"])
def test_animated_image_is_refused(tmp_path, name):
    first, *others = grey_pictures(3)
    path = tmp_path / name
    first.save(path, save_all=True, append_images=others, duration=100, loop=0)
    with pytest.raises(VidcolorError) as refused:
        detect_kind(path)
    assert str(refused.value) == (
        f"{path}: animated image (3 frames); vidcolor colourises stills and videos: "
        "convert it to a video first"
    )
    # Still pictures of the same formats, and a camera's MPO (whose extra frame is a preview of
    # the same shot), stay images; multi-page TIFFs are refused (test_multi_page_tiff_is_refused).
    still = tmp_path / f"still{path.suffix}"
    first.save(still)
    mpo = tmp_path / "camera.mpo"
    first.save(mpo, save_all=True, append_images=others[:1])
    for picture in (still, mpo):
        assert detect_kind(picture) is MediaKind.IMAGE


def write_with_cover(path: Path, audio_codec: str | None, film: bool = False) -> Path:
    """Audio (or a film) with a JPEG cover muxed as an attached picture, as taggers store it."""
    cover_jpeg = io.BytesIO()
    Image.fromarray(np.full((16, 16, 3), 90, np.uint8)).save(cover_jpeg, "JPEG")
    with av.open(str(path), "w", format="mp4" if path.suffix == ".m4a" else None) as out:
        video = None
        if film:
            video = out.add_stream("libx264", rate=25)
            video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        audio = None
        if audio_codec is not None:
            audio = out.add_stream(audio_codec, rate=44100)
            audio.codec_context.layout = "mono"
        cover = out.add_stream("mjpeg")
        cover.width = cover.height = 16
        cover.pix_fmt = "yuvj420p"
        cover.disposition = av.stream.Disposition.attached_pic
        packet = av.Packet(cover_jpeg.getvalue())
        packet.stream = cover
        packet.pts = packet.dts = 0
        packet.time_base = Fraction(1, 90000)
        out.mux(packet)
        if video is not None:
            for index in range(5):
                frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 100, np.uint8), "rgb24")
                frame.pts = index
                out.mux(video.encode(frame))
            out.mux(video.encode(None))
        if audio is not None:
            size = audio.codec_context.frame_size or 1024
            for start in range(0, 22050, size):
                samples = np.zeros((1, size), np.float32)
                frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
                frame.sample_rate, frame.pts = 44100, start
                out.mux(audio.encode(frame))
            out.mux(audio.encode(None))
    with av.open(str(path)) as written:  # the flag really is in the file
        assert any(
            s.disposition & av.stream.Disposition.attached_pic for s in written.streams.video
        )
    return path


@pytest.mark.parametrize("name, codec", [("song.m4a", "aac"), ("song.mp3", "libmp3lame")])
def test_audio_with_cover_art_is_not_a_video(tmp_path, name, codec):
    if codec not in av.codecs_available:
        pytest.skip(f"this FFmpeg has no {codec} encoder")
    song = write_with_cover(tmp_path / name, codec)
    with pytest.raises(VidcolorError) as refused:
        detect_kind(song)
    assert str(refused.value) == f"{song}: has no video stream (only cover art)"
    film = write_with_cover(tmp_path / "film-with-cover.mp4", "aac", film=True)
    assert detect_kind(film) is MediaKind.VIDEO


def test_multi_page_tiff_is_refused(tmp_path):
    """Keeping page 1 of a scanned booklet silently is data loss: say so instead."""
    tiff = tmp_path / "booklet.tif"
    pages = [Image.new("L", (32, 24), shade) for shade in (40, 200)]
    pages[0].save(tiff, save_all=True, append_images=pages[1:])
    with pytest.raises(VidcolorError, match=r"multi-page TIFF \(2 pages\)"):
        detect_kind(tiff)


def test_a_path_that_cannot_be_stat_is_one_line(tmp_path, monkeypatch):
    """A parent folder without search permission: stat fails with EACCES, not ENOENT."""
    target = tmp_path / "nox" / "x.png"

    def refuse(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "stat", refuse)
    with pytest.raises(VidcolorError, match="cannot read \\(permission denied\\)"):
        check_readable(target)
