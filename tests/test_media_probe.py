"""vidcolor.media.probe: the kind of a file comes from its content, not its name."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import IMAGE_KINDS

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
    check_readable(make_image("grey_jpeg"))
    check_readable(tmp_path)


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
