"""The TensorRT backend: its profile and cache keys here; building and running where a GPU and
TensorRT are usable (skipped with the reason elsewhere)."""

from __future__ import annotations

import numpy as np
import pytest

from vidcolor.engines.tensorrt_engine import Profile, engine_key, tensorrt_available
from vidcolor.models.shipped import default_weights
from vidcolor.pipeline import render_shape

REASON = tensorrt_available()


@pytest.mark.parametrize("render_size", [64, 160, 256, 384])
def test_one_profile_holds_every_render_shape_and_short_last_batch_of_a_run(render_size):
    profile = Profile.for_run(8, render_size)
    sizes = [(640, 480), (480, 640), (1920, 1080), (2, 20000), (20000, 2), (64, 48), (33, 31)]
    for width, height in sizes:
        w, h = render_shape(width, height, render_size)
        for batch in (1, 3, 8):
            assert profile.holds((batch, 1, h, w)), (width, height, batch)
    assert not profile.holds((9, 1, 160, 224))  # larger than the run's batch
    assert profile.optimum[0] == 8 and profile.optimum[2] == render_size // 32 * 32


def test_engine_key_changes_with_every_part(tmp_path):
    profile = Profile.for_run(8, 160)
    base = engine_key(default_weights(), profile, "10.9.0", "NVIDIA H200", "9.0")
    assert engine_key(default_weights(), profile, "10.9.0", "NVIDIA H200", "9.0") == base
    other_weights = tmp_path / "other.safetensors"
    other_weights.write_bytes(default_weights().read_bytes() + b" ")
    changed = [
        engine_key(default_weights(), profile, "10.10.0", "NVIDIA H200", "9.0"),
        engine_key(default_weights(), profile, "10.9.0", "NVIDIA L4", "8.9"),
        engine_key(default_weights(), Profile.for_run(16, 160), "10.9.0", "NVIDIA H200", "9.0"),
        engine_key(other_weights, profile, "10.9.0", "NVIDIA H200", "9.0"),
    ]
    assert all(key != base for key in changed)


def test_unavailable_tensorrt_says_why_in_one_line():
    if REASON is None:
        pytest.skip("TensorRT and a GPU are usable here")
    assert "\n" not in REASON and ("tensorrt" in REASON or "GPU" in REASON)


@pytest.mark.skipif(REASON is not None, reason=f"TensorRT not usable: {REASON}")
def test_tensorrt_engine_builds_caches_and_matches_torch(tmp_path, monkeypatch, torch_engine):
    from vidcolor.engines import cache, load_engine

    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path / "cache"))
    engine = load_engine(backend="tensorrt", batch_size=8, render_size=160)
    built = [e for e in cache.list_entries() if e.info["kind"] == "tensorrt"]
    assert len(built) == 1
    rng = np.random.default_rng(0)
    for shape in ((8, 1, 160, 224), (3, 1, 160, 224), (1, 1, 96, 320)):  # short last batch too
        lum = (rng.random(shape) * 100).astype(np.float32)
        assert np.abs(engine.infer(lum) - torch_engine.infer(lum)).mean() < 1.0
    stamp = built[0].path.stat().st_mtime_ns
    load_engine(backend="tensorrt", batch_size=8, render_size=160)  # a cache hit
    assert built[0].path.stat().st_mtime_ns == stamp
    engine.infer(np.zeros((2, 1, 512, 512), np.float32) + 50)  # outside the profile: a new one
    assert len([e for e in cache.list_entries() if e.info["kind"] == "tensorrt"]) == 2
