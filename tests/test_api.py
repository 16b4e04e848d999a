"""vidcolor's Python API end to end: timing, geometry, streams and colour of what comes out."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from fractions import Fraction

import cv2
import numpy as np
import pytest
from conftest import (
    FAST_RENDER,
    IMAGE_KINDS,
    ONE_THREAD,
    REPO,
    SAMPLE_FILM,
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
from vidcolor.options import EncodeSettings, RunOptions

FAST = RunOptions(render_size=FAST_RENDER, encode=EncodeSettings(preset="veryfast"))


def colorize_film(engine, source, target, codec="h264", overwrite=False):
    options = RunOptions(
        render_size=FAST_RENDER,
        encode=EncodeSettings(codec=codec, preset="veryfast"),
        overwrite=overwrite,
    )
    return vidcolor.colorize_video(source, target, options, engine=engine)


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


@pytest.mark.parametrize(
    "name, codec, size, pix_fmt",
    [
        ("odd", "h264", (98, 56), "yuv420p"),  # padded: plays on every H.264 decoder
        ("odd", "h264-444", (97, 55), "yuv444p"),  # exact size, on request
        ("tenbit", "h264", (96, 64), "yuv420p"),
    ],
)
def test_odd_size_and_ten_bit(engine, sample_films, tmp_path, name, codec, size, pix_fmt):
    out = tmp_path / "out.mp4"
    colorize_film(engine, sample_films[name], out, codec=codec)
    facts = film_facts(out)
    assert (facts.width, facts.height, facts.pix_fmt) == (*size, pix_fmt)
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
    result = vidcolor.colorize(disguised, tmp_path / "out.mp4", FAST, engine=engine)
    assert result.kind is MediaKind.VIDEO and result.frames == 12
    still = make_image("grey_jpeg")
    result = vidcolor.colorize(still, tmp_path / "out.png", FAST, engine=engine)
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
    result = vidcolor.colorize_image(source, out, FAST, engine=engine)
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
    vidcolor.colorize_image(make_image("rgb16_png"), out, FAST, engine=engine)
    pixels = read_back(out)
    assert pixels.dtype == np.uint8 and pixels.shape == (48, 80, 3)


def test_colorize_array_adds_colour_and_keeps_the_luminance(engine):
    """The promise: colour is predicted, lightness is the source's own, pixel for pixel."""
    from vidcolor.color import luminance

    grey = np.tile(np.linspace(20, 235, 96).astype(np.uint8), (64, 1))
    grey[20:40, 30:60] = 200  # some structure for the model to see
    rgb = vidcolor.colorize_array(grey, engine, render_size=64)
    assert rgb.shape == (64, 96, 3) and rgb.dtype == np.float32
    assert rgb.min() >= 0.0 and rgb.max() <= 1.0
    assert mean_chroma(rgb) > 2  # coloured, not grey
    in_gamut = (rgb > 0.01).all(axis=2) & (rgb < 0.99).all(axis=2)  # clipping changes L
    source_l, output_l = luminance(grey), luminance(rgb)
    assert in_gamut.mean() > 0.5
    assert np.abs(source_l - output_l)[in_gamut].max() < 0.5  # L units, of 100


# --- the real film --------------------------------------------------------------------------


@pytest.mark.slow
def test_sample_film(engine, tmp_path):
    """The public-domain film that ships in samples/ (the same as shared/footage's)."""
    source = REPO / "samples" / SAMPLE_FILM
    out = tmp_path / "bomb.mp4"
    options = RunOptions(render_size=128, batch_size=16, encode=EncodeSettings(preset="ultrafast"))
    result = vidcolor.colorize_video(source, out, options, engine=engine)
    before, after = film_facts(source), film_facts(out)
    assert result.frames == len(before.pts) == len(after.pts) == 360
    assert after.time_base == before.time_base == Fraction(1, 14848)
    assert after.times == before.times
    assert after.average_rate == before.average_rate
    assert (after.width, after.height) == (432, 320)
    assert after.chroma > 2 and after.chroma > before.chroma + 1


# --- many films in one process (as a batch worker runs them) --------------------------------

FAILING_FILMS_SCRIPT = """
import sys
from pathlib import Path
import torch
torch.set_num_threads(1)
import vidcolor
from vidcolor.engines import load_engine
from vidcolor.errors import VidcolorError
from vidcolor.media.encode import VideoWriter
from vidcolor.options import EncodeSettings, RunOptions

source, folder = Path(sys.argv[1]), Path(sys.argv[2])
engine = load_engine(device="cpu")
options = RunOptions(render_size=64, encode=EncodeSettings(preset="ultrafast"))
real_write = VideoWriter.write

def write_then_fail(self, rgb, pts):
    if self.frames_written == 20:
        raise VidcolorError("disk full (simulated)")
    real_write(self, rgb, pts)

VideoWriter.write = write_then_fail
for i in range(int(sys.argv[3])):
    try:
        vidcolor.colorize_video(source, folder / f"bad{i}.mp4", options, engine=engine)
    except VidcolorError:
        pass
    else:
        sys.exit("a failing film succeeded")
VideoWriter.write = real_write
result = vidcolor.colorize_video(source, folder / "good.mp4", options, engine=engine)
print(result.frames)
"""


def test_fifty_failing_films_then_a_good_one_in_one_process(make_video, tmp_path):
    """An encoder failure mid-film used to leave decode threads reading a closed container:
    the next film in the same process died with SIGSEGV. Run in a child so a crash is a
    failed test, not a dead test run."""
    source = make_video("film.mp4", width=640, height=480, frames=200)
    out = tmp_path / "out"
    out.mkdir()
    env = dict(os.environ, PYTHONPATH=str(REPO), **ONE_THREAD)
    proc = subprocess.run(
        [sys.executable, "-c", FAILING_FILMS_SCRIPT, str(source), str(out), "50"],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "200"
    assert [p.name for p in out.iterdir()] == ["good.mp4"]  # no partial file of the 50
    assert len(film_facts(out / "good.mp4").pts) == 200
