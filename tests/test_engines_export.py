"""ONNX export, int8 quantisation, the engine cache and the ONNX Runtime backend."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from vidcolor.engines import cache, load_engine
from vidcolor.engines.export import EXPORT_TOLERANCE, cached_export, check_against_torch
from vidcolor.engines.onnxruntime_engine import OnnxRuntimeEngine, usable_cpus
from vidcolor.engines.quantize import (
    _flush_every,
    calibration_planes,
    default_calibration,
    head_nodes,
)
from vidcolor.errors import VidcolorError
from vidcolor.models.classification import ClassificationConfig
from vidcolor.models.generator import ColorGenerator, GeneratorConfig
from vidcolor.models.registry import build_generator
from vidcolor.models.shipped import default_weights
from vidcolor.models.weights import load_generator, read_tensor_names, save_generator
from vidcolor.pipeline import colorize_stage

REPO = Path(__file__).resolve().parents[1]
VAL = REPO / ".." / "shared" / "data" / "val"
# The issue's bar: an export's CIEDE2000 against the truth within this of fp32's.
CIEDE_BAR = 0.5
COLORFULNESS_BAR = 3.0  # int8 costs about 1.4-2 on 24-947 val photos (README)


def tiny_weights(path: Path, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    model = ColorGenerator(GeneratorConfig(decoder_channels=(32, 16, 16, 8), head_channels=8))
    with torch.no_grad():  # BatchNorm statistics away from their initial values
        model.train()
        for _ in range(2):
            model(torch.rand(4, 1, 64, 64) * 100)
    save_generator(model.eval(), path)
    return path


def film_batch(count: int, height: int = 96, width: int = 128, seed: int = 0) -> np.ndarray:
    """L planes with structure (gradients, shapes), not noise: what a film gives the engine."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    planes = []
    for i in range(count):
        plane = 20 + 50 * x / width + 20 * y / height
        cx, cy = rng.uniform(0.2, 0.8) * width, rng.uniform(0.2, 0.8) * height
        plane[(x - cx) ** 2 + (y - cy) ** 2 < (height / 5) ** 2] = 90 - 5 * i % 30
        planes.append(plane)
    return np.stack(planes)[:, None].astype(np.float32)


# --- export --------------------------------------------------------------------------------


def test_fp32_export_round_trip_equals_torch_at_several_shapes(tmp_path):
    weights = tiny_weights(tmp_path / "tiny.safetensors")
    path = cached_export(weights, "fp32")
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param != "" for d in dims] == [True, False, True, True]  # N, H, W dynamic
    assert check_against_torch(load_generator(weights), path) <= EXPORT_TOLERANCE


def test_an_export_that_does_not_compute_the_model_is_refused(tmp_path):
    """The check passes fp32 rounding (EXPORT_TOLERANCE) but not a network that differs."""
    weights = tiny_weights(tmp_path / "tiny.safetensors")
    path = cached_export(weights, "fp32")
    other = load_generator(weights)
    with torch.no_grad():
        last = [p for p in other.parameters() if p.ndim == 1][-1]
        last.add_(0.05)  # one bias of the last layer nudged: a wrong export, not rounding
    with pytest.raises(VidcolorError, match="the ONNX export differs from PyTorch by"):
        check_against_torch(other, path)


def rounding_bound(batch: np.ndarray, fp32: np.ndarray) -> float:
    """1e-3, or twice PyTorch fp32's own distance from float64 where that is larger.

    The head is 110 x tanh: a 1e-5 rounding inside becomes 1e-3 Lab units out, so on some
    frames float32 itself is not within 1e-3 of the exact answer, whichever engine runs it.
    """
    model = load_generator(default_weights()).double().eval()
    with torch.no_grad():
        exact = model(torch.from_numpy(batch).double()).numpy()
    return max(1e-3, 2 * float(np.abs(fp32 - exact).max()))


def test_shipped_model_onnxruntime_equals_torch_including_a_short_last_batch(torch_engine):
    ort_engine = load_engine(device="cpu", backend="onnxruntime", precision="fp32", threads=1)
    assert ort_engine.name.startswith("onnxruntime-fp32")
    for shape in ((1, 1, 160, 224), (5, 1, 96, 320), (3, 1, 256, 192)):
        batch = film_batch(shape[0], shape[2], shape[3])
        theirs = torch_engine.infer(batch)
        ours = ort_engine.infer(batch)
        assert np.abs(ours - theirs).max() <= rounding_bound(batch, theirs)
        assert np.abs(ours - theirs).mean() <= 1e-3
    # Through the colourise stage: 11 frames at batch 8 end with a batch of 3.
    from vidcolor.media.decode import DecodedFrame

    frames = [DecodedFrame(i, i, p[0]) for i, p in enumerate(film_batch(11, 120, 160))]
    ours = list(colorize_stage(frames, ort_engine, 96, 8))
    theirs = list(colorize_stage(frames, torch_engine, 96, 8))
    assert len(ours) == len(theirs) == 11
    for a, b in zip(ours, theirs, strict=True):
        assert a.index == b.index and a.ab.shape == b.ab.shape
        assert np.abs(a.ab - b.ab).mean() <= 1e-3
        assert np.abs(a.ab - b.ab).max() <= 1e-2


def test_classification_model_exports_and_decodes_in_fp32_inside_the_fp16_graph(tmp_path):
    torch.manual_seed(0)
    model = build_generator(ClassificationConfig(decoder_channels=(32, 16, 16)))
    path = tmp_path / "bins.safetensors"
    save_generator(model.eval(), path)
    fp32 = cached_export(path, "fp32")
    assert check_against_torch(load_generator(path), fp32) <= EXPORT_TOLERANCE
    fp16 = onnx.load(str(cached_export(path, "fp16")))
    onnx.checker.check_model(fp16)
    softmax = [n for n in fp16.graph.node if n.op_type == "Softmax"]
    assert softmax, "the annealed mean's softmax is in the graph"
    types = {v.name: v.type.tensor_type.elem_type for v in fp16.graph.value_info}
    inferred = onnx.shape_inference.infer_shapes(fp16)
    types.update({v.name: v.type.tensor_type.elem_type for v in inferred.graph.value_info})
    assert all(types.get(n.input[0]) == onnx.TensorProto.FLOAT for n in softmax)
    convs = [n for n in fp16.graph.node if n.op_type == "Conv"]
    assert any(types.get(n.output[0]) == onnx.TensorProto.FLOAT16 for n in convs)


def test_fp16_export_keeps_fp32_input_and_output(tmp_path):
    weights = tiny_weights(tmp_path / "tiny.safetensors")
    model = onnx.load(str(cached_export(weights, "fp16")))
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    inits = [i.data_type for i in model.graph.initializer if len(i.dims) == 4]
    assert inits and all(t == onnx.TensorProto.FLOAT16 for t in inits)  # conv weights in fp16


def test_unknown_precision_and_broken_weights_are_one_line_errors(tmp_path):
    with pytest.raises(VidcolorError, match="unknown precision"):
        cached_export(default_weights(), "int4")
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"\x00" * 64)
    with pytest.raises(VidcolorError, match="cannot read model weights"):
        cached_export(broken, "fp32")


# --- cache ---------------------------------------------------------------------------------


def test_cache_hit_miss_and_invalidation(tmp_path, monkeypatch):
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path / "cache"))
    weights = tiny_weights(tmp_path / "tiny.safetensors")
    first = cached_export(weights, "fp32")
    stamp = first.stat().st_mtime_ns
    calls = []
    import vidcolor.engines.export as export

    real = export.export_onnx
    monkeypatch.setattr(export, "export_onnx", lambda *a, **k: (calls.append(a), real(*a, **k)))
    assert cached_export(weights, "fp32") == first and not calls  # hit: nothing exported
    assert first.stat().st_mtime_ns == stamp
    fp16 = cached_export(weights, "fp16")  # miss: another precision
    assert fp16 != first and len(calls) == 1
    tiny_weights(weights, seed=1)  # the same file name, other weights: a new entry
    changed = cached_export(weights, "fp32")
    assert changed != first and len(calls) == 2
    copy = tmp_path / "renamed copy.safetensors"
    copy.write_bytes(weights.read_bytes())
    assert cached_export(copy, "fp32") == changed and len(calls) == 2  # same bytes: a hit
    entries = cache.list_entries()
    assert {e.path for e in entries} == {first, fp16, changed}
    assert all(e.info["model_name"] == "tiny.safetensors" for e in entries)
    assert json.loads(first.with_name(first.name + ".json").read_text())["precision"] == "fp32"
    files, size = cache.clear_entries()  # each entry: the file, its sidecar, its lock
    assert files == 9 and size > 0 and cache.list_entries() == []


def test_a_damaged_or_replaced_entry_is_rebuilt_not_loaded(tmp_path, monkeypatch):
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path / "cache"))
    weights = tiny_weights(tmp_path / "tiny.safetensors")
    path = cached_export(weights, "fp32")
    good = path.read_bytes()
    for damage in (
        lambda: path.write_bytes(good[: len(good) // 2]),  # truncated
        lambda: path.write_bytes(good[:-4] + b"abcd"),  # other bytes
        lambda: path.with_name(path.name + ".json").unlink(),  # no sidecar
        lambda: path.with_name(path.name + ".json").write_text("{garbled"),
    ):
        damage()
        assert cached_export(weights, "fp32") == path
        recorded = json.loads(path.with_name(path.name + ".json").read_text())
        assert recorded["sha256"] == cache.file_digest(path)  # rebuilt whole
        onnx.checker.check_model(onnx.load(str(path)))
        OnnxRuntimeEngine(weights, "fp32")  # loads


def test_clear_deletes_only_what_vidcolor_wrote(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv(cache.CACHE_ENV, str(root))
    cached_export(tiny_weights(tmp_path / "tiny.safetensors"), "fp32")
    keep = [root / "notes.txt", root / "onnx" / "mine.onnx", root / "docs" / "thesis.docx"]
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "a-0123456789abcdef0123.onnx").write_text("not ours")
    (root / "tensorrt").symlink_to(victim)  # a symlinked kind folder is not followed
    for path in keep:
        path.parent.mkdir(exist_ok=True)
        path.write_text("the user's")
    files, _ = cache.clear_entries()
    assert files == 3
    assert all(path.read_text() == "the user's" for path in keep)
    assert (victim / "a-0123456789abcdef0123.onnx").exists()


def test_a_killed_export_leaves_no_entry_and_the_next_run_exports(tmp_path, monkeypatch):
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path / "cache"))
    weights = tiny_weights(tmp_path / "tiny.safetensors")
    import vidcolor.engines.export as export

    def dies(model, path, half=False):
        Path(path).write_bytes(b"half an onnx file")
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(export, "export_onnx", dies)
        with pytest.raises(KeyboardInterrupt):
            cached_export(weights, "fp32")
    folder = tmp_path / "cache" / "onnx"
    assert [p.suffix for p in folder.iterdir()] == [".lock"]  # no entry, no temporary file
    path = cached_export(weights, "fp32")
    onnx.checker.check_model(onnx.load(str(path)))


def test_two_runs_exporting_at_once_export_once(tmp_path):
    """Separate processes (as two vidcolor commands): the second waits, then finds the entry."""
    import subprocess
    import sys

    weights = tiny_weights(tmp_path / "tiny.safetensors")
    code = (
        "import sys; from vidcolor.engines.export import cached_export; "
        f"print(cached_export({str(weights)!r}, 'fp32'))"
    )
    env = dict(__import__("os").environ, VIDCOLOR_CACHE_DIR=str(tmp_path / "cache"))
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", code],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )
        for _ in range(2)
    ]
    results = [run.communicate(timeout=600) for run in runs]
    assert all(run.returncode == 0 for run in runs), results
    assert results[0][0] == results[1][0]
    exports = sum(err.count("exporting") for _, err in results)
    assert exports == 1, results


def test_an_unusable_cache_falls_back_to_a_temporary_one_with_a_warning(
    tmp_path, monkeypatch, caplog
):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv(cache.CACHE_ENV, str(blocker))
    monkeypatch.setattr(cache, "_fallback", None)
    with caplog.at_level("WARNING"):
        path = cached_export(tiny_weights(tmp_path / "tiny.safetensors"), "fp32")
    assert "cannot be created (not a directory): using a temporary one" in caplog.text
    assert not path.is_relative_to(blocker) and path.is_file()
    assert blocker.read_text() == "not a folder"


# --- int8 ----------------------------------------------------------------------------------


def test_calibration_set_ships_and_gives_render_size_planes():
    assert default_calibration().is_file()
    planes = calibration_planes(default_calibration(), 12, 160)
    assert len(planes) == 12
    assert all(min(p.shape) == 160 and p.dtype == np.float32 for p in planes)
    assert all(p.min() >= 0 and p.max() <= 100 for p in planes)


def test_flush_interval_never_divides_the_photo_count():
    for count in (1, 15, 16, 17, 256, 720720):
        assert count % _flush_every(count) != 0


def test_the_head_stays_fp32_and_only_the_head(tmp_path):
    """The last learned layer and what follows it; the classification head reaches back past
    the annealed mean (its weight is folded from a buffer) to the logits' convolution."""
    regression = tiny_weights(tmp_path / "tiny.safetensors")
    torch.manual_seed(0)
    bins = tmp_path / "bins.safetensors"
    save_generator(build_generator(ClassificationConfig(decoder_channels=(32, 16, 16))), bins)
    for weights, head_ops in ((regression, {"Conv", "Mul"}), (bins, {"Conv", "Div", "Softmax"})):
        fp32 = cached_export(weights, "fp32")
        nodes = {n.name: n for n in onnx.load(str(fp32)).graph.node}
        head = [nodes[name] for name in head_nodes(fp32, read_tensor_names(weights))]
        assert head_ops <= {n.op_type for n in head}
        weighted = [n.input[1] for n in head if n.op_type == "Conv"]
        assert "head.weight" in weighted
        assert len(weighted) == (2 if weights == bins else 1)  # + the annealed mean's


def test_no_recognised_head_leaves_the_whole_network_int8(tmp_path, caplog):
    """Weights whose names the graph does not hold (a renamed export): the walk would reach the
    input, so nothing is kept in fp32 and a warning says so."""
    fp32 = cached_export(tiny_weights(tmp_path / "tiny.safetensors"), "fp32")
    with caplog.at_level("WARNING"):
        assert head_nodes(fp32, frozenset({"renamed.weight"})) == []
    assert "no output head found" in caplog.text
    assert head_nodes(fp32, frozenset()) == []


def test_shipped_int8_engine_keeps_its_head_in_fp32(engine):
    """int8 everywhere but the head: the last convolution's weights and output are floats."""
    graph = onnx.load(str(cached_export(default_weights(), "int8"))).graph
    producer = {out: node for node in graph.node for out in node.output}
    floats = {i.name for i in graph.initializer if i.data_type == onnx.TensorProto.FLOAT}
    head = producer[graph.output[0].name]
    assert head.op_type == "Conv" and head.input[1] in floats
    convs = [n for n in graph.node if n.op_type == "Conv" and n is not head]
    assert all(producer[n.input[1]].op_type == "DequantizeLinear" for n in convs)


def sample_film_planes(count: int, shape: tuple[int, int]) -> np.ndarray:
    """The first ``count`` frames of the shipped sample film as L at render ``shape`` (w, h)."""
    from vidcolor.media.decode import DecodedFrame, VideoReader
    from vidcolor.pipeline import render_planes

    with VideoReader(REPO / "samples" / "a-bomb-blast-effects.mp4") as reader:
        planes = []
        for item in reader.frames():
            if isinstance(item, DecodedFrame):
                planes.append(item.luminance)
            if len(planes) == count:
                break
    return render_planes(planes, shape)[:, None]


def test_int8_engine_runs_every_shape_and_stays_close_to_fp32_on_film(engine, torch_engine):
    """On real frames int8 stays within a few Lab units of fp32 (photos: see the CIEDE test).

    Synthetic ramps are not a fair check: int8 ranges are calibrated on photographs.
    """
    assert engine.name.startswith("onnxruntime-int8")
    for count, shape in ((1, (224, 160)), (3, (320, 96)), (8, (224, 160))):
        batch = sample_film_planes(count, shape)
        ours, truth = engine.infer(batch), torch_engine.infer(batch)
        assert ours.shape == truth.shape and ours.dtype == np.float32
        assert np.abs(ours - truth).mean() < 3.0


@pytest.mark.skipif(not VAL.is_dir(), reason="shared/data/val not found next to the repository")
@pytest.mark.parametrize("precision", ["int8", "fp16"])
def test_reduced_precision_is_within_ciede_bar_of_fp32_on_real_photos(precision, torch_engine):
    from vidcolor.train.data import EvalSource
    from vidcolor.train.evaluate import evaluate_images

    class OnnxFile:
        """Any ONNX export, run by ONNX Runtime (fp16 included: ORT runs it on the CPU)."""

        device = "cpu"
        name = f"onnx-{precision}"

        def __init__(self, path: Path):
            import onnxruntime as ort

            self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

        def infer(self, batch):
            return self.session.run(None, {"L": np.ascontiguousarray(batch, np.float32)})[0]

    reduced = OnnxFile(cached_export(default_weights(), precision))
    photos = list(EvalSource(VAL).images(24))
    fp32 = evaluate_images(torch_engine, photos, 160).model
    ours = evaluate_images(reduced, photos, 160).model
    assert abs(ours.ciede2000 - fp32.ciede2000) <= CIEDE_BAR
    # One-sided on purpose: duller colour moves PSNR towards grey's, which on these photos is
    # up as often as down (CI's CPU without VNNI: int8 +0.40 dB, 1.4 less colourfulness), so
    # what is bounded is the loss of PSNR and of colour, not a gain.
    assert ours.psnr >= fp32.psnr - 0.3
    assert ours.colorfulness >= fp32.colorfulness - COLORFULNESS_BAR


def test_int8_with_a_users_own_calibration_photos_is_a_separate_entry(tmp_path, make_image):
    weights = tiny_weights(tmp_path / "tiny.safetensors")
    folder = tmp_path / "mine"
    for i in range(3):
        make_image("rgb_png", name=f"mine/{i}.png", width=96, height=64)
    shipped = cached_export(weights, "int8")
    mine = cached_export(weights, "int8", calibration=folder, photos=3)
    assert shipped != mine
    onnx.checker.check_model(onnx.load(str(mine)))
    with pytest.raises(VidcolorError, match="calibration photos not found"):
        cached_export(weights, "int8", calibration=tmp_path / "nothing")


def test_onnxruntime_threads_follow_the_cpus_this_process_may_use():
    import os

    assert usable_cpus() == len(os.sched_getaffinity(0))
