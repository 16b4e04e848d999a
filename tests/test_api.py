"""vidcolor's Python API end to end: timing, geometry, streams and colour of what comes out."""

from __future__ import annotations

import shutil
from fractions import Fraction

import cv2
import numpy as np
import pytest
from conftest import (
    BOMB_FILM,
    FAST_RENDER,
    IMAGE_KINDS,
    film_facts,
    leftovers,
    mean_chroma,
    mp4_movie_duration,
    packets_of,
    same_angle,
    top_level_boxes,
)
from PIL import Image, ImageOps

import vidcolor
from vidcolor.errors import VidcolorError
from vidcolor.media.probe import MediaKind


def colorize_film(engine, source, target, **options):
    return vidcolor.colorize_video(
        source, target, engine=engine, render_size=FAST_RENDER, preset="veryfast", **options
    )


@pytest.mark.parametrize("name", ["cfr29", "ntsc", "vfr", "offset", "edit_list"])
def test_timing_is_kept_exactly(engine, sample_films, tmp_path, name):
    source, out = sample_films[name], tmp_path / "out.mp4"
    result = colorize_film(engine, source, out)
    before, after = film_facts(source), film_facts(out)
    assert result.frames == len(before.pts) == len(after.pts)
    assert after.times == before.times
    assert after.duration == before.duration  # the last frame lasts as long as it did
    assert mp4_movie_duration(out) == mp4_movie_duration(source)
    assert after.average_rate == before.average_rate
    assert after.chroma > 2 > before.chroma


def test_mp4_is_browser_ready(engine, sample_films, tmp_path):
    out = tmp_path / "out.mp4"
    colorize_film(engine, sample_films["cfr29"], out)
    boxes = top_level_boxes(out)
    assert boxes.index("moov") < boxes.index("mdat"), boxes
    facts = film_facts(out)
    assert (facts.codec, facts.pix_fmt) == ("h264", "yuv420p")


def test_rotation_is_kept(engine, sample_films, tmp_path):
    out = tmp_path / "out.mp4"
    colorize_film(engine, sample_films["rotated"], out)
    facts = film_facts(out)
    assert same_angle(facts.rotation, 90)
    assert (facts.width, facts.height) == (96, 64)


def test_sample_aspect_ratio_is_kept(engine, sample_films, tmp_path):
    out = tmp_path / "out.mp4"
    colorize_film(engine, sample_films["sar"], out)
    assert film_facts(out).sar == Fraction(4, 3)


@pytest.mark.parametrize("name, size", [("odd", (97, 55)), ("tenbit", (96, 64))])
def test_odd_size_and_ten_bit(engine, sample_films, tmp_path, name, size):
    out = tmp_path / "out.mp4"
    colorize_film(engine, sample_films[name], out)
    facts = film_facts(out)
    assert (facts.width, facts.height) == size
    assert facts.times == film_facts(sample_films[name]).times
    assert facts.chroma > 2


def test_audio_is_copied_bit_for_bit(engine, sample_films, tmp_path):
    out = tmp_path / "out.mp4"
    result = colorize_film(engine, sample_films["audio"], out)
    assert result.copied_streams == ["audio #1"]
    before = packets_of(sample_films["audio"], "audio")
    assert len(before) > 5
    assert packets_of(out, "audio") == before
    assert film_facts(out).times == film_facts(sample_films["audio"]).times


def test_subtitles_are_copied_into_mkv(engine, sample_films, tmp_path):
    out = tmp_path / "out.mkv"
    result = colorize_film(engine, sample_films["subtitled"], out)
    assert result.copied_streams == ["subtitle #1"]
    assert packets_of(out, "subtitle") == packets_of(sample_films["subtitled"], "subtitle")
    assert film_facts(out).times == film_facts(sample_films["subtitled"]).times


def test_ffv1_master_in_mkv(engine, sample_films, tmp_path):
    out = tmp_path / "master.mkv"
    colorize_film(engine, sample_films["tenbit"], out, codec="ffv1")
    facts = film_facts(out)
    assert (facts.codec, facts.pix_fmt) == ("ffv1", "yuv444p10le")
    assert len(facts.pts) == 12
    assert facts.chroma > 2


def test_colorize_picks_the_kind_from_content(engine, sample_films, make_image, tmp_path):
    disguised = tmp_path / "film.png"
    shutil.copy(sample_films["cfr29"], disguised)
    result = vidcolor.colorize(disguised, tmp_path / "out.mp4", engine=engine, render_size=64)
    assert result.kind is MediaKind.VIDEO and result.frames == 12
    still = make_image("grey_jpeg")
    result = vidcolor.colorize(
        still, tmp_path / "out.png", engine=engine, render_size=64, codec="h264"
    )
    assert result.kind is MediaKind.IMAGE


def test_wrong_kind_is_refused(engine, sample_films, make_image, tmp_path):
    with pytest.raises(VidcolorError, match="colorize_video"):
        vidcolor.colorize_image(sample_films["cfr29"], tmp_path / "x.png", engine=engine)
    with pytest.raises(VidcolorError, match="colorize_image"):
        vidcolor.colorize_video(make_image("rgb_png"), tmp_path / "x.mp4", engine=engine)
    assert list(tmp_path.glob("x.*")) == []


def test_errors_name_the_output_not_its_temporary_file(engine, sample_films, tmp_path):
    out = tmp_path / "film.png"
    with pytest.raises(VidcolorError, match="cannot hold") as caught:
        colorize_film(engine, sample_films["cfr29"], out)
    assert str(caught.value).startswith(f"{out}:")
    assert list(tmp_path.iterdir()) == []


def test_existing_output_is_kept_without_overwrite(engine, sample_films, tmp_path):
    out = tmp_path / "out.mp4"
    out.write_bytes(b"precious")
    with pytest.raises(VidcolorError, match="already exists"):
        colorize_film(engine, sample_films["cfr29"], out)
    assert out.read_bytes() == b"precious"
    colorize_film(engine, sample_films["cfr29"], out, overwrite=True)
    assert len(film_facts(out).pts) == 12


def test_output_onto_input_is_refused(engine, sample_films, tmp_path):
    source = tmp_path / "film.mp4"
    shutil.copy(sample_films["cfr29"], source)
    data = source.read_bytes()
    with pytest.raises(VidcolorError, match="overwrite the input"):
        colorize_film(engine, source, source, overwrite=True)
    assert source.read_bytes() == data
    assert leftovers(tmp_path) == []


def test_failure_midway_leaves_nothing(engine, make_video, tmp_path):
    film = make_video("whole.mp4", frames=30, width=160, height=96)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(film.read_bytes()[: film.stat().st_size // 2])
    with pytest.raises(VidcolorError, match="truncated"):
        colorize_film(engine, cut, tmp_path / "out.mp4")
    assert not (tmp_path / "out.mp4").exists()
    assert leftovers(tmp_path) == []


# --- stills ---------------------------------------------------------------------------------


def upright_size(path) -> tuple[int, int]:
    with Image.open(path) as image:
        return ImageOps.exif_transpose(image).size


def read_back(path) -> np.ndarray:
    pixels = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    code = cv2.COLOR_BGRA2RGBA if pixels.shape[2] == 4 else cv2.COLOR_BGR2RGB
    return cv2.cvtColor(pixels, code)


@pytest.mark.parametrize("kind", sorted(IMAGE_KINDS))
def test_every_kind_of_still(engine, make_image, tmp_path, kind):
    source = make_image(kind)
    suffix = ".tif" if kind.endswith("tiff") else ".png"
    out = tmp_path / f"out{suffix}"
    result = vidcolor.colorize_image(source, out, engine=engine, render_size=FAST_RENDER)
    assert result.kind is MediaKind.IMAGE and result.output == out
    pixels = read_back(out)
    assert (pixels.shape[1], pixels.shape[0]) == upright_size(source)
    assert pixels.dtype == (np.uint16 if "16" in kind else np.uint8)
    assert pixels.shape[2] == (4 if kind == "rgba_png" else 3)
    assert mean_chroma(pixels) > 2
    if kind == "rgba_png":
        with Image.open(source) as image:
            alpha = np.asarray(image)[:, :, 3]
        assert np.array_equal(pixels[:, :, 3], alpha)


def test_sixteen_bit_into_jpeg_is_eight_bit(engine, make_image, tmp_path):
    out = tmp_path / "out.jpg"
    vidcolor.colorize_image(make_image("rgb16_png"), out, engine=engine, render_size=64)
    pixels = read_back(out)
    assert pixels.dtype == np.uint8 and pixels.shape == (48, 80, 3)


def test_colorize_array(engine):
    grey = np.tile(np.linspace(0, 255, 96).astype(np.uint8), (64, 1))
    rgb = vidcolor.colorize_array(grey, engine, render_size=64)
    assert rgb.shape == (64, 96, 3) and rgb.dtype == np.float32
    assert rgb.min() >= 0.0 and rgb.max() <= 1.0


# --- the real film --------------------------------------------------------------------------


@pytest.mark.slow
def test_shared_film(engine, shared_footage, tmp_path):
    source = shared_footage / BOMB_FILM
    if not source.is_file():
        pytest.skip(f"{source} is missing")
    out = tmp_path / "bomb.mp4"
    result = vidcolor.colorize_video(
        source, out, engine=engine, render_size=128, preset="ultrafast", batch_size=16
    )
    before, after = film_facts(source), film_facts(out)
    assert result.frames == len(before.pts) == len(after.pts) == 360
    assert after.time_base == before.time_base == Fraction(1, 14848)
    assert after.times == before.times
    assert after.average_rate == before.average_rate
    assert (after.width, after.height) == (432, 320)
    assert after.chroma > 2 and after.chroma > before.chroma + 1
