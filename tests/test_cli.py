"""``python -m vidcolor`` end to end, and every way a user can get it wrong.

Each mistake must end with a non-zero status, exactly one 'vidcolor: error:' line on stderr, no
traceback, and nothing left behind: no output file and no temporary '.part' file.
"""

from __future__ import annotations

import contextlib
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
    default_signal_handlers,
    film_facts,
    joined_twice,
    leftovers,
    mean_chroma,
    png_declaring,
    run_cli,
    write_video,
    write_with_cover,
)
from PIL import Image

from vidcolor.cli import main as cli_main
from vidcolor.signals import HANDLED

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


def _bad_preset(tmp: Path, films: dict) -> tuple[list[str], Path]:
    return [str(films["cfr29"]), "--preset", "nonsense"], tmp / "out.mp4"


def _crf_out_of_range(tmp: Path, films: dict) -> tuple[list[str], Path]:
    return [str(films["cfr29"]), "--codec", "h265", "--crf", "60"], tmp / "out.mp4"


def _png_bomb(tmp: Path, films: dict) -> tuple[list[str], Path]:
    bomb = tmp / "bomb.png"
    bomb.write_bytes(png_declaring(12000, 12000))
    return [str(bomb)], tmp / "out.png"


def _animated_gif(tmp: Path, films: dict) -> tuple[list[str], Path]:
    gif = tmp / "anim.gif"
    frames = [Image.new("L", (32, 24), shade) for shade in (40, 120, 200)]
    frames[0].save(gif, save_all=True, append_images=frames[1:], duration=100)
    return [str(gif)], tmp / "out.gif"


def _cover_art_only(tmp: Path, films: dict) -> tuple[list[str], Path]:
    return [str(write_with_cover(tmp / "song.mp4", film=False))], tmp / "out.mp4"


def _model_with_bad_metadata(tmp: Path, films: dict) -> tuple[list[str], Path]:
    from safetensors.numpy import save_file

    model = tmp / "bad.safetensors"
    save_file({"w": np.zeros(3, np.float32)}, str(model), metadata={"config": "{not json"})
    return [str(films["cfr29"]), "--model", str(model)], tmp / "out.mp4"


def _truncated_mkv(tmp: Path, films: dict) -> tuple[list[str], Path]:
    whole = write_video(tmp / "whole.mkv", VideoSpec(frames=90, width=320, height=240))
    cut = tmp / "cut.mkv"
    cut.write_bytes(whole.read_bytes()[:20000])
    whole.unlink()
    return [str(cut)], tmp / "out.mkv"


MORE_CASES = {
    "x264 preset that does not exist": _bad_preset,
    "crf out of range for h265": _crf_out_of_range,
    "png declaring 12000x12000": _png_bomb,
    "animated gif": _animated_gif,
    "audio with cover art only": _cover_art_only,
    "model whose metadata is not json": _model_with_bad_metadata,
    "truncated mkv": _truncated_mkv,
}


@pytest.mark.parametrize("case", list(MORE_CASES))
def test_more_mistakes(sample_films, tmp_path, case):
    """Found by adversarial testing: each gave a traceback, a crash, or silent damage."""
    args, out = MORE_CASES[case](tmp_path, sample_films)
    run = run_cli(*FAST, *args, "-o", out)  # the case's own options come last and win
    assert_clean_failure(run, out)


def test_hostile_but_valid_inputs_work(sample_films, tmp_path):
    """A 2x20000 strip (8 GB of working memory before), a concatenated transport stream
    whose clock restarts, H.264 into .avi and into .ts: all colourised, one run each."""
    strip = tmp_path / "strip.png"
    cv2.imwrite(str(strip), np.full((20000, 2), 128, np.uint8))
    single = tmp_path / "single.ts"
    write_video(single, VideoSpec(frames=12))
    joined = joined_twice(single, tmp_path / "joined.ts")
    for source, out in [
        (strip, tmp_path / "strip-out.png"),
        (joined, tmp_path / "joined-out.mp4"),
        (sample_films["audio"], tmp_path / "out.avi"),
        (sample_films["audio"], tmp_path / "out.ts"),
    ]:
        run = run_cli(source, "-o", out, *FAST, "-q")
        assert run.returncode == 0, run.stderr
        assert "Traceback" not in run.stderr
    assert cv2.imread(str(tmp_path / "strip-out.png")).shape == (20000, 2, 3)
    joined_pts = film_facts(tmp_path / "joined-out.mp4").pts
    assert len(joined_pts) == 24 and joined_pts == sorted(set(joined_pts))
    for name in ("out.avi", "out.ts"):
        assert len(film_facts(tmp_path / name).pts) == 12


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


def start_long_film(make_video, tmp_path: Path) -> tuple[subprocess.Popen, Path]:
    """A colourising run that lasts long enough to be interrupted mid-film."""
    source = make_video("long.mp4", width=96, height=64, frames=1500)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    env = dict(os.environ, PYTHONPATH=str(REPO), **ONE_THREAD)
    proc = subprocess.Popen(
        [sys.executable, "-m", "vidcolor", source, "-o", out_dir / "c.mp4", *FAST],
        cwd=REPO,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=default_signal_handlers,
    )
    deadline = time.monotonic() + 120
    while not list(out_dir.glob(".*part*")) and proc.poll() is None:
        assert time.monotonic() < deadline, "the temporary output never appeared"
        time.sleep(0.05)
    assert proc.poll() is None, "the film finished before it could be interrupted"
    return proc, out_dir


@pytest.mark.parametrize(
    "signals",
    [(signal.SIGTERM,), (signal.SIGINT,), (signal.SIGHUP,), (signal.SIGINT, signal.SIGINT)],
    ids=["SIGTERM", "SIGINT", "SIGHUP", "SIGINT twice"],
)
def test_signal_mid_film_leaves_no_partial_output(make_video, tmp_path, signals):
    """A killed job (Ctrl-C, a scheduler's SIGTERM, a closed terminal) cleans up; a second
    Ctrl-C during the cleanup does not abort it half-way."""
    proc, out_dir = start_long_film(make_video, tmp_path)
    for signum in signals:
        proc.send_signal(signum)
        time.sleep(0.02)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signals[0]
    assert stderr.strip().splitlines() == [
        f"vidcolor: error: interrupted by {signals[0].name}; no partial output was kept"
    ]
    assert list(out_dir.iterdir()) == []


def test_sigterm_while_the_model_loads(make_video, tmp_path):
    source = make_video("film.mp4", frames=6)
    env = dict(os.environ, PYTHONPATH=str(REPO), **ONE_THREAD)
    proc = subprocess.Popen(
        [sys.executable, "-m", "vidcolor", source, "-o", tmp_path / "c.mp4", *FAST],
        cwd=REPO,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    maps = Path(f"/proc/{proc.pid}/maps")
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:  # the engine is being loaded
        with contextlib.suppress(OSError):
            if "onnxruntime" in maps.read_text():
                break
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr
    assert stderr.strip().splitlines() == [
        "vidcolor: error: interrupted by SIGTERM; no partial output was kept"
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["film.mp4"]


# --- the command group ----------------------------------------------------------------------


def test_colorize_is_the_default_command(sample_films, tmp_path):
    named = run_cli("colorize", sample_films["cfr29"], "-o", tmp_path / "a.mp4", *FAST, "-q")
    bare = run_cli(sample_films["cfr29"], "-o", tmp_path / "b.mp4", *FAST, "-q")
    assert named.returncode == bare.returncode == 0, named.stderr + bare.stderr
    assert film_facts(tmp_path / "a.mp4").pts == film_facts(tmp_path / "b.mp4").pts


def test_help_lists_the_commands_without_loading_torch():
    run = run_cli("--help")
    assert run.returncode == 0
    assert "colorize" in run.stdout and "INPUT... -o OUTPUT" in run.stdout
    code = "import sys, vidcolor, vidcolor.cli; sys.exit('torch' in sys.modules)"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    assert subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO).returncode == 0


def test_training_package_imports_from_the_repository_root():
    """The source folder vidcolor/ shadows an installed package when run from the root."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    code = "import vidcolor.train.losses"
    proc = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True)
    assert proc.returncode == 0, proc.stderr


# --- hostile names and outputs --------------------------------------------------------------


def test_file_names_that_are_not_utf8_or_hold_newlines(make_image, tmp_path):
    source = tmp_path / "in"
    good = make_image("rgb_png", "in/good.png")
    odd = Path(os.fsdecode(bytes(source) + b"/bad\xff.png"))
    shutil.copy(good, odd)
    broken = source / "two\nlines.png"
    broken.write_bytes(good.read_bytes()[:100])
    out = tmp_path / "out"
    run = run_cli(source, "-o", out, *FAST)
    assert run.returncode == 1
    assert "Traceback" not in run.stderr
    errors = [line for line in run.stderr.splitlines() if line.startswith("vidcolor: error:")]
    assert len(errors) == 2 and "two\\nlines.png" in errors[0], run.stderr
    assert errors[-1] == "vidcolor: error: 1 of 3 files failed"
    made = sorted(os.fsencode(p.name) for p in out.iterdir())
    assert made == [b"bad\xff.png", b"good.png"]
    assert leftovers(tmp_path) == []


def test_two_inputs_with_the_same_name_are_refused(make_image, tmp_path):
    one, two = make_image("rgb_png", "d1/x.png"), make_image("rgb_png", "d2/x.png")
    out = tmp_path / "out"
    run = run_cli(one, two, "-o", out, *FAST)
    assert_clean_failure(run, out)
    assert "two inputs would write it" in run.stderr


def test_an_output_folder_inside_the_input_is_left_alone(make_image, tmp_path):
    make_image("rgb_png", "scans/a.png")
    scans = tmp_path / "scans"
    first = run_cli(scans, "-o", scans / "colour", *FAST)
    second = run_cli(scans, "-o", scans / "colour", *FAST, "--overwrite")
    assert first.returncode == second.returncode == 0, first.stderr + second.stderr
    assert "1 of 1 files" in second.stderr
    assert sorted(str(p.relative_to(scans)) for p in scans.rglob("*") if p.is_file()) == [
        "a.png",
        "colour/a.png",
    ]


def test_overwrite_never_replaces_a_fifo(sample_films, tmp_path):
    fifo = tmp_path / "out.mp4"
    os.mkfifo(fifo)
    run = run_cli(sample_films["cfr29"], "-o", fifo, *FAST, "--overwrite")
    assert_clean_failure(run, fifo, existed=True)
    assert "not a regular file" in run.stderr and fifo.is_fifo()


def test_an_unreadable_input_is_one_line(make_image, tmp_path, monkeypatch, capsys):
    """Root reads every file, so the permission check itself is made to say no."""
    still = make_image("rgb_png")
    real_access = os.access
    monkeypatch.setattr(
        os, "access", lambda path, mode: False if Path(path) == still else real_access(path, mode)
    )
    handlers = {signum: signal.getsignal(signum) for signum in HANDLED}
    try:
        with pytest.raises(SystemExit) as exited:
            cli_main([str(still), "-o", str(tmp_path / "out.png"), *FAST])
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
    assert exited.value.code == 1
    assert capsys.readouterr().err.splitlines() == [f"vidcolor: error: {still}: permission denied"]
    assert not (tmp_path / "out.png").exists()


# --- found by the second round of adversarial testing ---------------------------------------


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["batch"], "Missing argument 'INPUTS...'. (see vidcolor batch -h)"),
        (["eval", "m.safetensors", "d", "--device", "xyz"], "(see vidcolor eval -h)"),
    ],
)
def test_usage_errors_are_one_line_with_where_to_look(args, line):
    run = run_cli(*args)
    assert run.returncode == 2
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vidcolor: error: ") and lines[0].endswith(line)


@pytest.mark.parametrize("where", ["input", "output"])
def test_an_empty_name_is_refused(make_image, tmp_path, where):
    """pathlib reads '' as '.': an empty input used to colourise the whole current folder."""
    still = make_image("rgb_png")
    args = ["", "-o", tmp_path / "out"] if where == "input" else [still, still, "-o", ""]
    run = run_cli(*args, *FAST)
    assert run.returncode == 2 and "empty name" in run.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [still.name]


def test_a_sighup_ignored_by_nohup_stays_ignored(make_video, tmp_path):
    source = make_video("film.mp4", frames=300)
    env = dict(os.environ, PYTHONPATH=str(REPO), **ONE_THREAD)
    out = tmp_path / "c.mp4"
    proc = subprocess.Popen(
        ["nohup", sys.executable, "-m", "vidcolor", source, "-o", out, *FAST, "-q"],
        cwd=REPO,
        env=env,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".*part*")) and proc.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGHUP)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    assert len(film_facts(out).pts) == 300


def test_a_locked_folder_is_one_failure(make_image, tmp_path, monkeypatch, capsys):
    """One unreadable folder given as input: one line, counted once."""
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    monkeypatch.setattr(
        os, "access", lambda p, mode: False if Path(p) == locked else real_access(p, mode)
    )
    handlers = {signum: signal.getsignal(signum) for signum in HANDLED}
    try:
        with pytest.raises(SystemExit) as exited:
            cli_main([str(locked), str(make_image("rgb_png")), "-o", str(tmp_path / "out"), "-q"])
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
    errors = capsys.readouterr().err.splitlines()
    assert exited.value.code == 1
    assert errors == [
        f"vidcolor: error: {locked}: permission denied",
        "vidcolor: error: 1 of 2 files failed",
    ]
    assert (tmp_path / "out" / "rgb_png.png").is_file()
