import numpy as np
import pytest
import torch

from vidcolor.engines import Engine, choose_engine, load_engine
from vidcolor.engines.torch_engine import TorchEngine, resolve_device
from vidcolor.errors import VidcolorError
from vidcolor.models.generator import ColorGenerator, GeneratorConfig
from vidcolor.models.weights import save_generator


def test_every_cpu_engine_follows_the_engine_interface(engine):
    engines = [
        engine,
        load_engine(device="cpu", backend="torch"),
        load_engine(device="cpu", backend="torch", precision="bf16"),
        load_engine(device="cpu", backend="onnxruntime", precision="fp32"),
    ]
    names = [e.name.split(":")[0] for e in engines]
    assert names == ["onnxruntime-int8", "torch-fp32", "torch-bf16", "onnxruntime-fp32"]
    for each in engines:
        assert isinstance(each, Engine) and each.device == "cpu"
        ab = each.infer(np.full((3, 1, 64, 96), 50.0, np.float32))
        assert ab.shape == (3, 2, 64, 96) and ab.dtype == np.float32


def test_engine_is_deterministic_per_frame():
    engine = load_engine(device="cpu", backend="torch")
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
    with pytest.raises(VidcolorError, match="unknown precision"):
        load_engine(precision="int4")


def test_device_resolution():
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(VidcolorError, match="unknown device"):
        resolve_device("tpu")
    with pytest.raises(VidcolorError, match="unknown device 'cuda:'"):
        resolve_device("cuda:")
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
    saved = load_engine(path, device="cpu", backend="torch").infer(batch)
    np.testing.assert_allclose(ab, saved, atol=1e-4)  # eval mode: what the saved file gives
    with torch.no_grad():
        train_mode = model(torch.from_numpy(batch)).numpy()
    assert not np.allclose(ab, train_mode, atol=1e-3)  # batch statistics would differ


def test_broken_model_file_is_a_user_error_through_load_engine(tmp_path):
    path = tmp_path / "film.safetensors"
    path.write_bytes(b"\x00" * 64)
    with pytest.raises(VidcolorError, match="cannot read model weights"):
        load_engine(path, device="cpu")


# --- choosing the engine -------------------------------------------------------------------


@pytest.fixture
def machine(monkeypatch):
    """Pretend this machine has (or lacks) a CUDA GPU, TensorRT and the ONNX packages."""
    import importlib.util

    import vidcolor.engines as engines
    import vidcolor.engines.tensorrt_engine as trt_module
    import vidcolor.engines.torch_engine as torch_module

    state = {"cuda": False, "tensorrt": False, "missing": set()}
    real_find_spec = importlib.util.find_spec

    def find_spec(name, *args):
        return None if name in state["missing"] else real_find_spec(name, *args)

    def tensorrt_available():
        if not state["tensorrt"]:
            return "the tensorrt package is not installed"
        return None if state["cuda"] else "no CUDA GPU is visible"

    monkeypatch.setattr(engines.importlib.util, "find_spec", find_spec)
    monkeypatch.setattr(engines, "_cuda_visible", lambda: state["cuda"])
    monkeypatch.setattr(trt_module, "tensorrt_available", tensorrt_available)
    monkeypatch.setattr(torch_module.torch.cuda, "is_available", lambda: state["cuda"])
    return state


def choice(*args, **kwargs):
    picked = choose_engine(*args, **kwargs)
    return picked.backend, picked.device, picked.precision


def test_auto_picks_tensorrt_then_torch_cuda_then_the_fastest_cpu_engine(machine):
    machine.update(cuda=True, tensorrt=True)
    assert choice() == ("tensorrt", "cuda", "fp16")
    assert choice(device="cuda:1") == ("tensorrt", "cuda:1", "fp16")
    machine.update(tensorrt=False)  # a GPU without TensorRT
    assert choice() == ("torch", "cuda", "fp16")
    assert choice(precision="bf16") == ("torch", "cuda", "bf16")
    machine.update(cuda=False)
    assert choice() == ("onnxruntime", "cpu", "int8")
    assert choice(precision="fp32") == ("onnxruntime", "cpu", "fp32")
    assert choice(precision="bf16") == ("torch", "cpu", "bf16")
    machine.update(cuda=True, tensorrt=True)
    assert choice(device="cpu") == ("onnxruntime", "cpu", "int8")  # --device cpu is obeyed
    assert choice(precision="int8") == ("onnxruntime", "cpu", "int8")  # only the CPU runs int8


def test_auto_falls_back_with_a_warning_where_onnx_is_missing(machine, caplog):
    machine["missing"] = {"onnxscript"}
    with caplog.at_level("WARNING"):
        assert choice() == ("torch", "cpu", "fp32")
    assert "onnxscript not installed" in caplog.text


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"backend": "tensorrt"}, "tensorrt is not usable here: the tensorrt package"),
        ({"backend": "tensorrt", "device": "cpu"}, "runs on a CUDA GPU"),
        ({"backend": "onnxruntime", "device": "cuda"}, "runs on the CPU"),
        ({"backend": "onnxruntime", "precision": "fp16"}, "runs int8, fp32, not fp16"),
        ({"backend": "torch", "precision": "int8"}, "runs fp32, bf16, not int8"),
        ({"backend": "torch", "device": "cuda"}, "no CUDA GPU"),
        ({"device": "cuda"}, "no CUDA GPU is visible"),
        ({"device": "tpu"}, "unknown device"),
        ({"device": "cuda:abc"}, "unknown device 'cuda:abc'"),
    ],
)
def test_what_cannot_run_here_is_one_clear_error(machine, kwargs, message):
    with pytest.raises(VidcolorError, match=message):
        choose_engine(**kwargs)


def test_asking_for_onnxruntime_without_its_packages_says_what_to_install(machine):
    machine["missing"] = {"onnxruntime", "onnxscript"}
    with pytest.raises(VidcolorError, match="pip install onnxruntime onnxscript"):
        choose_engine(backend="onnxruntime")


def test_tensorrt_without_a_gpu_names_the_reason(machine):
    machine.update(tensorrt=True, cuda=False)
    with pytest.raises(VidcolorError, match="no CUDA GPU"):
        choose_engine(backend="tensorrt")
    assert choice() == ("onnxruntime", "cpu", "int8")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU visible to PyTorch")
@pytest.mark.parametrize("precision", ["fp16", "bf16", "fp32"])
def test_torch_cuda_engine_matches_the_cpu(precision, torch_engine):
    engine = load_engine(device="cuda", backend="torch", precision=precision)
    batch = np.linspace(0, 100, 2 * 96 * 128, dtype=np.float32).reshape(2, 1, 96, 128)
    tolerance = {"fp32": 1e-2, "fp16": 1.0, "bf16": 3.0}[precision]
    assert np.abs(engine.infer(batch) - torch_engine.infer(batch)).mean() < tolerance


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch_size": 0}, "batch_size must be an integer of at least 1"),
        ({"render_size": -5}, "render_size must be an integer of at least 32"),
        ({"threads": -1}, "threads must be a positive integer"),
        ({"threads": "2"}, "threads must be a positive integer"),
        ({"device": None}, "device must be a string"),
        ({"weights": 123}, "model weights must be a path"),
    ],
)
def test_load_engine_refuses_bad_arguments_in_one_line(kwargs, message):
    with pytest.raises(VidcolorError, match=message):
        load_engine(**kwargs)
