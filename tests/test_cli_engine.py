"""``vidcolor engine ...`` and ``--backend``/``--precision`` end to end (real subprocesses)."""

from __future__ import annotations

import pytest
from conftest import FAST_RENDER, film_facts, run_cli


@pytest.mark.parametrize(
    ("backend", "precision", "name"),
    [
        ("auto", "auto", "onnxruntime-int8"),
        ("onnxruntime", "fp32", "onnxruntime-fp32"),
        ("torch", "fp32", "torch-fp32"),
        ("torch", "bf16", "torch-bf16"),
    ],
)
def test_colourise_a_film_on_each_cpu_backend(sample_films, tmp_path, backend, precision, name):
    out = tmp_path / f"{backend}-{precision}.mp4"
    run = run_cli(
        sample_films["cfr29"],
        "-o",
        out,
        "--backend",
        backend,
        "--precision",
        precision,
        "--device",
        "cpu",
        "--render-size",
        FAST_RENDER,
    )
    assert run.returncode == 0, run.stderr
    assert film_facts(out).pts == film_facts(sample_films["cfr29"]).pts
    assert name in run.stderr  # the summary names the engine


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--backend", "tensorrt"], "runs on a CUDA GPU, not --device cpu"),
        (["--backend", "onnxruntime", "--precision", "bf16"], "runs int8, fp32, not bf16"),
        (["--backend", "torch", "--precision", "int8"], "not int8"),
        (["--backend", "cuda"], "Invalid value for '--backend'"),
    ],
)
def test_unusable_engine_choices_are_one_line(sample_films, tmp_path, args, message):
    out = tmp_path / "out.mp4"
    run = run_cli(sample_films["cfr29"], "-o", out, "--device", "cpu", *args)
    assert run.returncode in (1, 2)
    assert message in run.stderr and "Traceback" not in run.stderr and not out.exists()


def test_tensorrt_without_tensorrt_installed_says_so(sample_films, tmp_path):
    from vidcolor.engines.tensorrt_engine import tensorrt_available

    reason = tensorrt_available()
    if reason is None:
        pytest.skip("TensorRT is usable here")
    out = tmp_path / "out.mp4"
    run = run_cli(sample_films["cfr29"], "-o", out, "--backend", "tensorrt")
    assert run.returncode == 1 and run.stderr.strip() == f"vidcolor: error: {reason_line(reason)}"
    assert not out.exists()


def reason_line(reason: str) -> str:
    return f"--backend tensorrt is not usable here: {reason}"


def test_engine_export_list_and_clear(tmp_path):
    copy = tmp_path / "model.onnx"
    run = run_cli("engine", "export", "-o", copy)
    assert run.returncode == 0, run.stderr
    assert copy.is_file() and run.stdout.strip() == str(copy)
    again = run_cli("engine", "export", "-o", copy)
    assert again.returncode == 1 and "already exists" in again.stderr
    listed = run_cli("engine", "list")
    assert listed.returncode == 0 and "onnx" in listed.stdout and "fp32" in listed.stdout
    assert "vidcolor-lite0-people-places.safetensors" in listed.stdout


def test_engine_commands_refuse_bad_input_in_one_line(tmp_path):
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"\x00" * 10)
    cases = [
        (["engine", "export", str(tmp_path / "missing.safetensors")], "not found"),
        (["engine", "export", str(broken)], "cannot read model weights"),
        (["engine", "export", "--calibration", str(tmp_path)], "--precision int8 only"),
        (["engine", "build"], "tensorrt is not usable"),
        (
            ["engine", "calibration", str(tmp_path / "none"), "-o", str(tmp_path / "c.tar")],
            "not found",
        ),
    ]
    for args, message in cases:
        run = run_cli(*args)
        assert run.returncode == 1, (args, run.stderr)
        assert message in run.stderr and "Traceback" not in run.stderr, (args, run.stderr)


def test_engine_clear_empties_a_cache_of_its_own(tmp_path, monkeypatch):
    monkeypatch.setenv("VIDCOLOR_CACHE_DIR", str(tmp_path / "cache"))
    run = run_cli("engine", "export", "--precision", "fp16")
    assert run.returncode == 0, run.stderr
    cleared = run_cli("engine", "clear")
    assert cleared.returncode == 0 and "removed 3 files" in cleared.stdout  # entry, sidecar, lock
    assert "(empty)" in run_cli("engine", "list").stdout


def test_engine_calibration_set_from_a_folder(tmp_path, make_image):
    for i in range(4):
        make_image("rgb_png", name=f"photos/{i}.png", width=200, height=120)
    out = tmp_path / "calibration.tar"
    run = run_cli("engine", "calibration", tmp_path / "photos", "-o", out, "--photos", "3")
    assert run.returncode == 0, run.stderr
    import tarfile

    with tarfile.open(out) as tar:
        names = tar.getnames()
    assert names == ["0000.jpg", "0001.jpg", "0002.jpg"]


def test_misspelt_device_is_a_usage_error(sample_films, tmp_path):
    run = run_cli(sample_films["cfr29"], "-o", tmp_path / "o.mp4", "--device", "gpu")
    assert run.returncode == 2 and "use auto, cpu, cuda or cuda:N" in run.stderr


def test_engine_export_never_overwrites_the_model(tmp_path):
    import shutil

    from vidcolor.models.shipped import default_weights

    model = tmp_path / "model.safetensors"
    shutil.copyfile(default_weights(), model)
    run = run_cli("engine", "export", model, "-o", model, "--overwrite")
    assert run.returncode == 1 and "would overwrite the input" in run.stderr
    assert model.read_bytes() == default_weights().read_bytes()
