"""``vidcolor batch`` on a local Ray with 2 CPU workers: mixed inputs, failures, kills, GPUs."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from conftest import (
    VideoSpec,
    asymmetric_grey,
    film_facts,
    kill_session,
    packets_of,
    session_pids,
    write_video,
)

from vidcolor.batch.driver import BatchSettings, run_batch
from vidcolor.batch.worker import EngineChoice
from vidcolor.errors import VidcolorError
from vidcolor.options import RunOptions

pytest.importorskip("ray")
pytestmark = pytest.mark.xdist_group("ray")  # one local cluster at a time

TESTS = Path(__file__).parent
LONG = VideoSpec(width=96, height=64, frames=84, audio=True, options={"g": "12"})  # 2.9 s
SHORT = VideoSpec(width=64, height=48, frames=20, audio=True)
CHUNK_SECONDS = 0.8  # the long film in 3 chunks, the short one whole


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Scans in nested folders, a zip of scans, two films with sound, a corrupt film."""
    root = tmp_path_factory.mktemp("archive")
    (root / "scans" / "1950s").mkdir(parents=True)
    for k in range(3):
        grey = np.roll(asymmetric_grey(80, 56), 7 * k, axis=1)
        cv2.imwrite(str(root / "scans" / "1950s" / f"scan-{k}.jpg"), grey)
    with zipfile.ZipFile(root / "box.zip", "w") as box:
        for k in range(2):
            ok, data = cv2.imencode(".png", np.roll(asymmetric_grey(64, 48), 5 * k, axis=0))
            box.writestr(f"prints/print-{k}.png", data.tobytes())
    (root / "reels").mkdir()
    write_video(root / "reels" / "long.mp4", LONG)
    write_video(root / "reels" / "short.mp4", SHORT)
    (root / "reels" / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(4000))
    return root


def _inputs(archive: Path) -> list[str]:
    return [str(archive / "scans"), str(archive / "box.zip"), str(archive / "reels")]


EXPECTED = {
    "1950s/scan-0.jpg",
    "1950s/scan-1.jpg",
    "1950s/scan-2.jpg",
    "box/prints/print-0.png",
    "box/prints/print-1.png",
    "long.mp4",
    "short.mp4",
}


def _outputs(outdir: Path) -> dict[str, str]:
    """Every published file under OUTDIR (not the job's own state) -> its sha256."""
    found = {}
    for path in outdir.rglob("*"):
        rel = path.relative_to(outdir)
        if (
            path.is_file()
            and rel.parts[0] != ".vidcolor-batch"
            and path.name != "vidcolor-report.json"
        ):
            found[str(rel)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def _settings(**changes) -> BatchSettings:
    return BatchSettings(**{"workers": 2, "threads": 1, "chunk_seconds": CHUNK_SECONDS, **changes})


def test_mixed_archive_finishes_with_the_bad_ones_reported(archive, tmp_path):
    poison = archive / "reels" / "poison.png"
    cv2.imwrite(str(poison), asymmetric_grey(32, 32))
    hook = {
        "worker_process_setup_hook": "batch_hooks.kill_on_poison",
        "env_vars": {"PYTHONPATH": os.pathsep.join([str(TESTS), *sys.path])},
    }
    try:
        report = run_batch(
            _inputs(archive),
            tmp_path / "out",
            RunOptions(),
            EngineChoice(),
            _settings(runtime_env=hook),
        )
    finally:
        poison.unlink()
    outdir = tmp_path / "out"
    assert set(_outputs(outdir)) == EXPECTED
    failed = {Path(f["input"]).name: f["error"] for f in report.failed}
    assert set(failed) == {"corrupt.mp4", "poison.png"}
    assert "worker died 3 times" in failed["poison.png"]
    assert report.done == len(EXPECTED) and report.items == len(EXPECTED) + 2
    assert len(report.workers) == 2 and len({w["pid"] for w in report.workers}) == 2
    saved = json.loads((outdir / "vidcolor-report.json").read_text())
    assert saved["done"] == report.done and len(saved["failed"]) == 2
    # the long film went in chunks: still every frame, pts and byte of sound
    for name in ("long.mp4", "short.mp4"):
        source, output = archive / "reels" / name, outdir / name
        assert film_facts(output).pts == film_facts(source).pts
        assert packets_of(output, "audio") == packets_of(source, "audio")
    assert report.frames == LONG.frames + SHORT.frames + 5
    assert not list((outdir / ".vidcolor-batch" / "chunks").rglob("*.mp4"))
    # run again: everything done is skipped, only the corrupt film is tried again
    again = run_batch(_inputs(archive), outdir, RunOptions(), EngineChoice(), _settings())
    assert again.skipped == len(EXPECTED) and again.done == 0
    assert [Path(f["input"]).name for f in again.failed] == ["corrupt.mp4"]


def _kill_when(outdir: Path, events: int, args: list[str]) -> None:
    """Start ``vidcolor batch`` and SIGKILL it and all its Ray processes after ``events``
    ledger records (0: as soon as Ray's workers run)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "vidcolor", "batch", *args],
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    ledger = outdir / ".vidcolor-batch" / "ledger.jsonl"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None:
        lines = ledger.read_bytes().count(b"\n") if ledger.exists() else 0
        workers = [p for p in session_pids(process.pid) if _is_worker(p)]
        if lines >= events and (events or workers):
            break
        time.sleep(0.05)
    kill_session(process)


def _is_worker(pid: int) -> bool:
    try:
        return b"ColorizeWorker" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def test_killed_at_any_moment_then_rerun_gives_the_uninterrupted_output(archive, tmp_path):
    args = [*_inputs(archive), "--workers", "2", "--chunk-seconds", str(CHUNK_SECONDS), "-q"]
    whole = tmp_path / "whole"
    run = subprocess.run(
        [sys.executable, "-m", "vidcolor", "batch", *args, "-o", str(whole)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 1 and "corrupt.mp4" in run.stderr
    expected = _outputs(whole)
    assert set(expected) == EXPECTED
    killed = tmp_path / "killed"
    # while workers start; after the first records; in the middle of the long film's chunks
    published = []
    for events in (0, 3, 9):
        _kill_when(killed, events, [*args, "-o", str(killed)])
        assert not [p for p in killed.rglob("*.part*") if ".vidcolor-batch" not in p.parts]
        published.append(len(_outputs(killed)))
    assert published[0] < len(EXPECTED)
    # then one worker is killed mid-run: Ray restarts it and runs its row again
    rerun = subprocess.Popen(
        [sys.executable, "-m", "vidcolor", "batch", *args, "-o", str(killed)],
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and rerun.poll() is None:
        workers = [p for p in session_pids(rerun.pid) if _is_worker(p)]
        if workers:
            time.sleep(1.0)
            os.kill(workers[0], signal.SIGKILL)
            break
        time.sleep(0.05)
    _, stderr = rerun.communicate(timeout=600)
    assert rerun.returncode == 1, stderr
    assert "corrupt.mp4" in stderr and "1 of 8 items failed" in stderr
    assert "worker died" not in stderr
    resumed = _outputs(killed)
    assert set(resumed) == set(expected)  # nothing missing, nothing extra
    for name, digest in expected.items():
        if name.endswith(".mp4"):  # x264 is not bit-exact from run to run: the film is
            _assert_same_film(whole / name, killed / name)
        else:
            assert resumed[name] == digest, name  # stills byte for byte
    records = [json.loads(line) for line in (killed / ".vidcolor-batch/ledger.jsonl").open()]
    done = [r["key"] for r in records if r["event"] == "done"]
    assert len(done) == len(set(done))  # nothing done twice


def test_sigterm_ends_the_job_with_one_line_even_as_a_background_job(archive, tmp_path):
    """Ray puts in SIGTERM handlers of its own (one dumps a stack trace); ours must win even
    when the job started with SIGINT ignored, as a shell's background job does."""
    out = tmp_path / "out"
    args = [str(archive / "scans"), str(archive / "reels" / "long.mp4"), "-o", str(out), "-q"]
    args += ["--workers", "2", "--chunk-seconds", str(CHUNK_SECONDS)]
    job = subprocess.Popen(
        [sys.executable, "-m", "vidcolor", "batch", *args],
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    ledger = out / ".vidcolor-batch" / "ledger.jsonl"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and job.poll() is None:
        if ledger.exists() and ledger.read_bytes().count(b"\n") >= 1:
            break
        time.sleep(0.05)
    job.send_signal(signal.SIGTERM)
    _, stderr = job.communicate(timeout=120)
    assert job.returncode == 128 + signal.SIGTERM, stderr
    assert stderr.strip().splitlines() == [
        "vidcolor: error: interrupted by SIGTERM; finished files are kept: "
        "the same command goes on from there"
    ]
    assert not [p for p in out.rglob("*.part*") if ".vidcolor-batch" not in p.parts]
    assert len(_outputs(out)) < 4
    rerun = subprocess.run(
        [sys.executable, "-m", "vidcolor", "batch", *args], capture_output=True, timeout=600
    )
    assert rerun.returncode == 0, rerun.stderr
    expected = {"1950s/scan-0.jpg", "1950s/scan-1.jpg", "1950s/scan-2.jpg", "long.mp4"}
    assert set(_outputs(out)) == expected


def _assert_same_film(a: Path, b: Path) -> None:
    """Same frames, timestamps and sound; colour equal but for the encoder's own choices."""
    assert film_facts(b).pts == film_facts(a).pts
    assert packets_of(b, "audio") == packets_of(a, "audio")
    with av.open(str(a)) as first, av.open(str(b)) as second:
        for x, y in zip(first.decode(video=0), second.decode(video=0), strict=True):
            diff = np.abs(x.to_ndarray(format="rgb24") - y.to_ndarray(format="rgb24").astype(int))
            assert diff.mean() < 3  # (a frame from another chunk or model differs by tens)


def test_workers_land_on_distinct_gpus_and_fall_back_to_cpu(archive, tmp_path):
    """Two logical GPUs declared to a CPU machine: one actor on each, CPU engines inside."""
    report = run_batch(
        [str(archive / "scans")],
        tmp_path / "out",
        RunOptions(),
        EngineChoice(),
        _settings(workers=None, local_gpus=2),
    )
    devices = sorted(w["cuda_visible_devices"] for w in report.workers)
    assert devices == ["0", "1"]
    assert all(w["device"] == "cpu" for w in report.workers)
    assert report.done == 3 and not report.failed


def test_one_job_per_outdir_and_existing_outputs_are_kept(archive, tmp_path):
    import fcntl

    outdir = tmp_path / "out"
    (outdir / ".vidcolor-batch").mkdir(parents=True)
    with open(outdir / ".vidcolor-batch" / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        with pytest.raises(VidcolorError, match="another vidcolor batch job"):
            run_batch([str(archive / "scans")], outdir, RunOptions(), EngineChoice(), _settings())
    (outdir / "1950s").mkdir()
    (outdir / "1950s" / "scan-0.jpg").write_bytes(b"mine")
    report = run_batch(
        [str(archive / "scans")], outdir, RunOptions(), EngineChoice(), _settings(workers=1)
    )
    assert (outdir / "1950s" / "scan-0.jpg").read_bytes() == b"mine"
    assert [Path(f["input"]).name for f in report.failed] == ["scan-0.jpg"]
    assert "--overwrite" in report.failed[0]["error"] and report.done == 2
    # an input that changed is redone over the job's own output, without --overwrite
    changed = archive / "scans" / "1950s" / "scan-1.jpg"
    before = changed.read_bytes()
    try:
        cv2.imwrite(str(changed), asymmetric_grey(80, 56).T.copy())
        again = run_batch(
            [str(archive / "scans")], outdir, RunOptions(), EngineChoice(), _settings(workers=1)
        )
    finally:
        changed.write_bytes(before)
    assert again.done == 1 and again.skipped == 1
    assert [Path(f["input"]).name for f in again.failed] == ["scan-0.jpg"]
    # OUTDIR may not be an input folder: outputs would replace inputs
    with pytest.raises(VidcolorError, match="also an input folder"):
        run_batch([str(outdir)], outdir, RunOptions(), EngineChoice(), _settings())


def test_archive_traversal_is_refused(tmp_path):
    evil = tmp_path / "evil.zip"
    ok, data = cv2.imencode(".png", asymmetric_grey(32, 32))
    with zipfile.ZipFile(evil, "w") as box:
        box.writestr("../escape.png", data.tobytes())
        box.writestr("/abs.png", data.tobytes())
        box.writestr("fine.png", data.tobytes())
    outdir = tmp_path / "deep" / "out"
    report = run_batch([str(evil)], outdir, RunOptions(), EngineChoice(), _settings(workers=1))
    assert set(_outputs(outdir)) == {"evil/fine.png"}
    assert len(report.failed) == 2 and not (tmp_path / "deep" / "escape.png").exists()


def test_joins_an_existing_cluster_by_address(archive, tmp_path, ray_head):
    """A cluster started apart (`ray start --head`, as on a cluster's head node): the job
    joins it with --address, and RAY_ADDRESS (what `ray job submit` sets) does the same."""
    args = [sys.executable, "-m", "vidcolor", "batch", "--workers", "1", "-q"]
    scans = archive / "scans" / "1950s"
    run = subprocess.run(
        [*args, str(scans / "scan-0.jpg"), "-o", str(tmp_path / "out"), "--address", ray_head],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    run = subprocess.run(
        [*args, str(scans / "scan-1.jpg"), "-o", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "RAY_ADDRESS": ray_head},
    )
    assert run.returncode == 0, run.stderr
    report = json.loads((tmp_path / "out" / "vidcolor-report.json").read_text())
    assert report["address"] == ray_head
    assert set(_outputs(tmp_path / "out")) == {"scan-0.jpg", "scan-1.jpg"}
