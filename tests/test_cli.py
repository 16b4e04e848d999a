"""``python -m vidcolor`` end to end, and every way a user can get it wrong.

Each mistake must end with a non-zero status, exactly one 'vidcolor: error:' line on stderr, no
traceback, and nothing left behind: no output file and no temporary '.part' file.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import (
    ONE_THREAD,
    REPO,
    VideoSpec,
    film_facts,
    leftovers,
    mean_chroma,
    run_cli,
    write_video,
)

FAST = ("--render-size", "64", "--device", "cpu", "--preset", "veryfast")


def test_film(sample_films, tmp_path):
    out = tmp_path / "out.mp4"
    run = run_cli(sample_films["audio"], "-o", out, *FAST)
    assert run.returncode == 0, run.stderr
    assert "12 frames" in run.stderr and "copied audio" in run.stderr
    assert "Traceback" not in run.stderr
    before, after = film_facts(sample_films["audio"]), film_facts(out)
    assert after.times == before.times
    assert after.chroma > 2
    assert leftovers(tmp_path) == []


def test_ffv1_into_mkv_quietly(sample_films, tmp_path):
    out = tmp_path / "master.mkv"
    run = run_cli(sample_films["odd"], "-o", out, "--codec", "ffv1", "--quiet", *FAST)
    assert run.returncode == 0, run.stderr
    assert run.stderr == "" and run.stdout == ""
    facts = film_facts(out)
    assert (facts.codec, facts.width, facts.height) == ("ffv1", 97, 55)
    # Matroska counts in milliseconds: each time rounds to the nearest one
    before = film_facts(sample_films["odd"]).times
    assert len(facts.times) == len(before)
    assert all(abs(a - b) <= Fraction(1, 2000) for a, b in zip(facts.times, before, strict=True))


def test_sixteen_bit_image(make_image, tmp_path):
    out = tmp_path / "out.png"
    run = run_cli(make_image("grey16_png"), "-o", out, "--quiet", *FAST)
    assert run.returncode == 0, run.stderr
    assert run.stderr == ""  # no library chatter either
    pixels = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    assert pixels.dtype == np.uint16 and pixels.shape == (48, 80, 3)
    assert mean_chroma(pixels[:, :, ::-1]) > 2


def test_folder_tree_is_mirrored(make_image, tmp_path):
    source = tmp_path / "scans"
    make_image("grey_jpeg", "scans/a.jpg")
    make_image("rgba_png", "scans/sub/b.png")
    (source / "sub" / "deeper").mkdir()
    write_video(source / "sub" / "deeper" / "c.mp4", VideoSpec(frames=6, width=64, height=48))
    (source / "notes.txt").write_text("not media")
    make_image("rgb_png", "scans/.hidden.png")
    out = tmp_path / "coloured"  # does not exist yet; its parent does
    run = run_cli(source, "-o", out, *FAST)
    assert run.returncode == 0, run.stderr
    made = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert made == ["a.jpg", "sub/b.png", "sub/deeper/c.mp4"]
    assert "3 of 3 files" in run.stderr
    assert cv2.imread(str(out / "sub" / "b.png"), cv2.IMREAD_UNCHANGED).shape == (48, 80, 4)
    assert len(film_facts(out / "sub" / "deeper" / "c.mp4").pts) == 6


def test_several_inputs_into_a_folder(make_image, sample_films, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    still = make_image("sepia_jpeg")
    run = run_cli(still, sample_films["vfr"], "-o", out, *FAST)
    assert run.returncode == 0, run.stderr
    assert sorted(p.name for p in out.iterdir()) == ["sepia_jpeg.jpg", "vfr.mp4"]
    assert film_facts(out / "vfr.mp4").times == film_facts(sample_films["vfr"]).times


def test_one_bad_file_in_a_folder_does_not_stop_the_others(make_image, tmp_path):
    source = tmp_path / "in"
    good = make_image("rgb_png", "in/good.png")
    bad = source / "bad.png"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    out = tmp_path / "out"
    run = run_cli(source, "-o", out, *FAST)
    assert run.returncode == 1
    assert "Traceback" not in run.stderr
    assert (out / "good.png").is_file() and not (out / "bad.png").exists()
    assert leftovers(tmp_path) == []


def test_version():
    run = run_cli("--version")
    assert run.returncode == 0 and "vidcolor" in run.stdout


# --- mistakes -------------------------------------------------------------------------------

Case = Callable[[Path, dict], tuple[list[str], Path]]


def truncated(films: dict, folder: Path, faststart: bool) -> Path:
    film = write_video(
        folder / f"whole-{faststart}.mp4",
        VideoSpec(frames=30, width=160, height=96, faststart=faststart),
    )
    cut = folder / f"cut-{faststart}.mp4"
    cut.write_bytes(film.read_bytes()[: film.stat().st_size // 2])
    film.unlink()
    return cut


def _missing(tmp: Path, films: dict) -> tuple[list[str], Path]:
    return [str(tmp / "missing.mp4")], tmp / "out.mp4"


def _empty(tmp: Path, films: dict) -> tuple[list[str], Path]:
    (tmp / "empty.mp4").touch()
    return [str(tmp / "empty.mp4")], tmp / "out.mp4"


def _text(tmp: Path, films: dict) -> tuple[list[str], Path]:
    (tmp / "notes.mp4").write_text("Just some text, not a film.\n" * 50)
    return [str(tmp / "notes.mp4")], tmp / "out.mp4"


def _cut_faststart(tmp: Path, films: dict) -> tuple[list[str], Path]:
    return [str(truncated(films, tmp, True))], tmp / "out.mp4"


def _cut_plain(tmp: Path, films: dict) -> tuple[list[str], Path]:
    return [str(truncated(films, tmp, False))], tmp / "out.mp4"


def _cut_image(tmp: Path, suffix: str) -> tuple[list[str], Path]:
    whole = tmp / f"whole{suffix}"
    cv2.imwrite(str(whole), np.random.default_rng(0).integers(0, 255, (48, 80, 3), np.uint8))
    cut = tmp / f"cut{suffix}"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    whole.unlink()
    return [str(cut)], tmp / f"out{suffix}"


def _cut_png(tmp: Path, films: dict) -> tuple[list[str], Path]:
    return _cut_image(tmp, ".png")


def _cut_jpeg(tmp: Path, films: dict) -> tuple[list[str], Path]:
    return _cut_image(tmp, ".jpg")


def _no_folder(tmp: Path, films: dict) -> tuple[list[str], Path]:
    return [str(films["cfr29"])], tmp / "nowhere" / "out.mp4"


def _unwritable(tmp: Path, films: dict) -> tuple[list[str], Path]:
    if os.geteuid() == 0:
        if not Path("/sys").is_dir():
            pytest.skip("running as root and /sys is missing: no unwritable folder to use")
        return [str(films["cfr29"])], Path("/sys/vidcolor-test-out.mp4")
    locked = tmp / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    return [str(films["cfr29"])], locked / "out.mp4"


def _video_into_png(tmp: Path, films: dict) -> tuple[list[str], Path]:
    return [str(films["cfr29"])], tmp / "out.png"


def _unknown_extension(tmp: Path, films: dict) -> tuple[list[str], Path]:
    return [str(films["cfr29"])], tmp / "out.xyz"


def _image_into_mp4(tmp: Path, films: dict) -> tuple[list[str], Path]:
    png = tmp / "still.png"
    cv2.imwrite(str(png), np.full((48, 80, 3), 128, np.uint8))
    return [str(png)], tmp / "out.mp4"


CASES = {
    "missing file": _missing,
    "empty file": _empty,
    "text named .mp4": _text,
    "truncated film, faststart": _cut_faststart,
    "truncated film, index at end": _cut_plain,
    "truncated png": _cut_png,
    "truncated jpeg": _cut_jpeg,
    "output folder missing": _no_folder,
    "output folder not writable": _unwritable,
    "film into .png": _video_into_png,
    "film into unknown extension": _unknown_extension,
    "still into .mp4": _image_into_mp4,
}


@pytest.mark.parametrize("case", list(CASES))
def test_mistake(sample_films, tmp_path, case):
    inputs, out = CASES[case](tmp_path, sample_films)
    try:
        run = run_cli(*inputs, "-o", out, *FAST)
    finally:
        if (tmp_path / "locked").exists():
            (tmp_path / "locked").chmod(0o700)
    assert_clean_failure(run, out)


def test_several_inputs_into_an_unwritable_folder(make_image, tmp_path):
    if os.geteuid() != 0 or not Path("/sys").is_dir():
        pytest.skip("needs root and /sys: a folder even root cannot create things in")
    stills = [make_image("grey_jpeg"), make_image("rgb_png")]
    run = run_cli(*stills, "-o", "/sys/vidcolor-test-out", *FAST)
    assert run.returncode != 0
    assert "Traceback" not in run.stderr, run.stderr
    assert "cannot create folder" in run.stderr
    assert run.stderr.splitlines()[-1] == "vidcolor: error: 2 of 2 files failed"
    assert not Path("/sys/vidcolor-test-out").exists()


def test_existing_output_is_left_untouched(sample_films, tmp_path):
    out = tmp_path / "out.mp4"
    out.write_bytes(b"an earlier result")
    run = run_cli(sample_films["cfr29"], "-o", out, *FAST)
    assert_clean_failure(run, out, existed=True)
    assert "--overwrite" in run.stderr
    assert out.read_bytes() == b"an earlier result"


@pytest.mark.parametrize("overwrite", [False, True])
def test_output_onto_input(sample_films, tmp_path, overwrite):
    film = Path(shutil.copy(sample_films["cfr29"], tmp_path / "film.mp4"))
    data = film.read_bytes()
    run = run_cli(film, "-o", film, *FAST, *(["--overwrite"] if overwrite else []))
    assert_clean_failure(run, film, existed=True)
    assert film.read_bytes() == data


def assert_clean_failure(run, out: Path, existed: bool = False) -> None:
    lines = run.stderr.splitlines()
    assert run.returncode != 0
    assert ".part" not in run.stderr  # messages name the output, not its temporary file
    assert "Traceback" not in run.stderr, run.stderr
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith("vidcolor: error:"), run.stderr
    if not existed:
        assert not out.exists()
    if out.parent.is_dir() and os.access(out.parent, os.R_OK):
        assert leftovers(out.parent, recursive=False) == []


def test_sigterm_mid_film_leaves_no_partial_output(make_video, tmp_path):
    """A killed job (SIGTERM, as from a scheduler) cleans up its temporary output."""
    source = make_video("long.mp4", width=96, height=64, frames=1500)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    env = dict(os.environ, PYTHONPATH=str(REPO), **ONE_THREAD)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "vidcolor",
            str(source),
            "-o",
            str(out_dir / "c.mp4"),
            "--render-size",
            "64",
            "--device",
            "cpu",
        ],
        cwd=REPO,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not list(out_dir.glob(".*part*")) and proc.poll() is None:
        assert time.monotonic() < deadline, "the temporary output never appeared"
        time.sleep(0.05)
    assert proc.poll() is None, "the film finished before it could be interrupted"
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines() == [
        "vidcolor: error: interrupted; no partial output was kept"
    ]
    assert list(out_dir.iterdir()) == []
