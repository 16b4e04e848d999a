import numpy as np
import pytest
import torch

from vidcolor.engines import Engine, load_engine
from vidcolor.engines.torch_engine import TorchEngine, resolve_device
from vidcolor.errors import VidcolorError
from vidcolor.models.generator import ColorGenerator, GeneratorConfig
from vidcolor.models.weights import save_generator


def test_default_engine_follows_the_engine_interface():
    engine = load_engine(device="cpu")
    assert isinstance(engine, Engine)
    assert engine.device == "cpu" and engine.name.startswith("torch:")
    ab = engine.infer(np.full((3, 1, 64, 96), 50.0, np.float32))
    assert ab.shape == (3, 2, 64, 96) and ab.dtype == np.float32


def test_engine_is_deterministic_per_frame():
    engine = load_engine(device="cpu")
    rng = np.random.default_rng(0)
    batch = (rng.random((2, 1, 64, 64)) * 100).astype(np.float32)
    together = engine.infer(batch)
    alone = engine.infer(batch[1:])
    assert np.allclose(together[1], alone[0], atol=1e-3)  # batching does not change a frame


def test_missing_weights_and_unknown_backend_are_user_errors(tmp_path):
    with pytest.raises(VidcolorError, match="not found"):
        load_engine(tmp_path / "nope.safetensors")
    with pytest.raises(VidcolorError, match="unknown engine backend"):
        load_engine(backend="quantum")


def test_device_resolution():
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(VidcolorError, match="unknown device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(VidcolorError, match="no CUDA GPU"):
            resolve_device("cuda")


def test_engine_from_a_live_model_infers_in_eval_mode_and_restores_training_mode(tmp_path):
    """Training validates through the same engine as inference, without disturbing training."""
    torch.manual_seed(0)
    model = ColorGenerator(GeneratorConfig(decoder_channels=(32, 16, 16, 8), head_channels=8))
    model.train()
    with torch.no_grad():  # move BatchNorm's running stats away from their initial values
        for _ in range(3):
            model(torch.rand(4, 1, 64, 64) * 100)
    engine = TorchEngine.from_model(model, device="cpu")
    assert isinstance(engine, Engine) and engine.device == "cpu"
    batch = (np.random.default_rng(1).random((2, 1, 64, 64)) * 100).astype(np.float32)
    ab = engine.infer(batch)
    assert model.training  # back in training mode
    assert all(m.training for m in model.modules())
    path = tmp_path / "live.safetensors"
    save_generator(model, path)
    saved = load_engine(path, device="cpu").infer(batch)
    np.testing.assert_allclose(ab, saved, atol=1e-4)  # eval mode: what the saved file gives
    with torch.no_grad():
        train_mode = model(torch.from_numpy(batch)).numpy()
    assert not np.allclose(ab, train_mode, atol=1e-3)  # batch statistics would differ


def test_broken_model_file_is_a_user_error_through_load_engine(tmp_path):
    path = tmp_path / "film.safetensors"
    path.write_bytes(b"\x00" * 64)
    with pytest.raises(VidcolorError, match="cannot read model weights"):
        load_engine(path, device="cpu")
