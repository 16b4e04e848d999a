import numpy as np
import pytest
import torch

from vidcolor.engines import Engine, load_engine
from vidcolor.engines.torch_engine import resolve_device
from vidcolor.errors import VidcolorError


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
