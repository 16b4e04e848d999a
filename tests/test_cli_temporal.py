"""``vidcolor deflicker``, ``vidcolor eval-video`` and the colorize command's temporal options,
run as a user would (a subprocess), on small generated films."""

from __future__ import annotations

import json
import os

import pytest
from conftest import FAST_RENDER, film_facts, leftovers, packets_of, run_cli

from vidcolor import RunOptions
from vidcolor.options import EncodeSettings
from vidcolor.temporal.deflicker import deflicker_video


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("vidcolor: error: ")
    return lines[0]


# --- deflicker -------------------------------------------------------------------------------


def test_deflicker_command_keeps_timing_and_audio(make_colour_video, tmp_path):
    source = make_colour_video("flicker.mp4", frames=20, audio=True)
    out = tmp_path / "steady.mp4"
    run = run_cli("deflicker", source, "-o", out, "--render-size", FAST_RENDER)
    assert run.returncode == 0, run.stderr
    assert "20 frames" in run.stderr and "copied audio" in run.stderr
    assert film_facts(out).pts == film_facts(source).pts
    assert packets_of(out, "audio") == packets_of(source, "audio")
    assert leftovers(tmp_path) == []


def test_deflicker_copies_subtitles_into_mkv(sample_films, tmp_path):
    out = tmp_path / "out.mkv"
    run = run_cli("deflicker", sample_films["subtitled"], "-o", out, "-q", "--render-size", 64)
    assert run.returncode == 0, run.stderr
    assert run.stderr == ""
    assert packets_of(out, "subtitle") == packets_of(sample_films["subtitled"], "subtitle")


def test_deflicker_errors_are_one_line_and_leave_nothing(make_colour_video, tmp_path):
    source = make_colour_video("flicker.mp4", frames=6)
    missing = run_cli("deflicker", tmp_path / "nope.mp4", "-o", tmp_path / "x.mp4")
    assert missing.returncode == 1
    assert "nope.mp4" in one_error_line(missing.stderr)

    taken = tmp_path / "taken.mp4"
    taken.write_bytes(b"keep me")
    exists = run_cli("deflicker", source, "-o", taken)
    assert exists.returncode == 1
    assert "already exists" in one_error_line(exists.stderr)
    assert taken.read_bytes() == b"keep me"

    cut = tmp_path / "cut.mp4"
    data = source.read_bytes()
    cut.write_bytes(data[: len(data) * 2 // 3])  # a film that stops two thirds in
    broken = run_cli("deflicker", cut, "-o", tmp_path / "out.mp4")
    assert broken.returncode == 1
    one_error_line(broken.stderr)
    assert not (tmp_path / "out.mp4").exists()
    assert leftovers(tmp_path) == []


def test_deflicker_option_mistakes_are_usage_errors(make_colour_video, tmp_path):
    source = make_colour_video("flicker.mp4", frames=4)
    run = run_cli("deflicker", source, "-o", tmp_path / "o.mp4", "--strength", "9")
    assert run.returncode == 2
    assert "--strength" in run.stderr


# --- eval-video ------------------------------------------------------------------------------


@pytest.fixture
def three_films(make_colour_video, tmp_path):
    """A steady colour film (the reference), the same film flickering, and that deflickered."""
    reference = make_colour_video("reference.mp4", frames=16, flicker=0.0)
    flicker = make_colour_video("flicker.mp4", frames=16, flicker=8.0)
    steady = tmp_path / "deflickered.mkv"
    options = RunOptions(render_size=FAST_RENDER, encode=EncodeSettings(codec="ffv1"))
    deflicker_video(flicker, steady, options)
    return reference, flicker, steady


def test_eval_video_scores_flicker_against_the_reference(three_films):
    reference, flicker, steady = three_films
    run = run_cli("eval-video", reference, flicker, steady, "--json")
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["colour_reference"] is True and report["cuts"] == []
    ref = report["reference"]
    shaky, fixed = report["videos"]
    assert ref["frames"] == 16 and ref["pairs"] == 15
    assert ref["chroma_warp_error"] < 2  # a steady film: only rounding
    assert shaky["chroma_warp_error"] > 50  # about 2 x 8^2 from the jumps
    assert fixed["chroma_warp_error"] < 0.2 * shaky["chroma_warp_error"]
    assert fixed["ab_change_p95"] < 0.35 * shaky["ab_change_p95"]
    assert fixed["ab_shift"] < shaky["ab_shift"]
    assert fixed["psnr"] > shaky["psnr"] and fixed["ciede2000"] < shaky["ciede2000"]
    assert ref["psnr"] is None  # the reference is not scored against itself


def test_eval_video_prints_a_table(three_films):
    reference, flicker, _ = three_films
    run = run_cli("eval-video", reference, flicker)
    assert run.returncode == 0, run.stderr
    assert "chroma warp error" in run.stdout and "CIEDE2000" in run.stdout
    assert run.stdout.count("\n| ") == 3  # header, reference, one film


def test_eval_video_of_a_grey_reference_has_no_colour_scores(sample_films):
    film = sample_films["cfr29"]
    run = run_cli("eval-video", film, film, "--json")
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["colour_reference"] is False
    assert report["videos"][0]["psnr"] is None
    assert report["videos"][0]["warp_error"] == pytest.approx(report["reference"]["warp_error"])


def test_eval_video_refuses_films_of_different_lengths(make_colour_video):
    long_film = make_colour_video("long.mp4", frames=12, flicker=0.0)
    short_film = make_colour_video("short.mp4", frames=8)
    run = run_cli("eval-video", long_film, short_film)
    assert run.returncode == 1
    assert "short.mp4: ends after 8 frames" in one_error_line(run.stderr)


# --- colorize's temporal options -------------------------------------------------------------


def test_colorize_takes_the_temporal_options(sample_films, tmp_path):
    film = sample_films["cfr29"]
    off = run_cli(film, "-o", tmp_path / "off.mp4", "--no-temporal", "--render-size", 64, "-q")
    assert off.returncode == 0, off.stderr
    strong = run_cli(
        film, "-o", tmp_path / "strong.mp4", "--temporal-strength", "2", "--render-size", 64, "-q"
    )
    assert strong.returncode == 0, strong.stderr
    assert film_facts(tmp_path / "strong.mp4").pts == film_facts(film).pts
    bad = run_cli(film, "-o", tmp_path / "bad.mp4", "--temporal-strength", "-1")
    assert bad.returncode == 2 and "--temporal-strength" in bad.stderr


def test_eval_video_of_identical_colour_films_is_strict_json(make_colour_video):
    """Identical films have infinite PSNR: JSON has no Infinity, and no warning may leak."""
    film = make_colour_video("film.mp4", frames=8, flicker=0.0)
    run = run_cli("eval-video", film, film, "--json")
    assert run.returncode == 0, run.stderr
    assert run.stderr == ""
    report = json.loads(run.stdout, parse_constant=lambda name: pytest.fail(f"{name} in JSON"))
    assert report["videos"][0]["psnr"] is None


def test_eval_video_refuses_a_fifo_and_a_still_in_one_line(make_colour_video, make_image, tmp_path):
    film = make_colour_video("film.mp4", frames=8, flicker=0.0)
    fifo = tmp_path / "pipe.mp4"
    os.mkfifo(fifo)
    for other, message in [(fifo, "not a regular file"), (make_image("rgb_png"), "is an image")]:
        run = run_cli("eval-video", film, other, timeout=60)
        assert run.returncode == 1
        assert message in one_error_line(run.stderr)
