import numpy as np
import pytest

from vidcolor import metrics


@pytest.fixture
def photo() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.random((32, 32, 3))


def test_identical_images_score_perfectly(photo):
    s = metrics.score(photo, photo)
    assert s.psnr == float("inf")
    assert s.ssim == pytest.approx(1.0)
    assert s.ciede2000 == pytest.approx(0.0, abs=1e-6)
    assert s.delta_cf == pytest.approx(0.0)


def test_grey_image_has_zero_colourfulness():
    grey = np.full((8, 8, 3), 0.4)
    assert metrics.colorfulness(grey) == pytest.approx(0.0)


def test_colourfulness_grows_with_saturation(photo):
    grey = photo.mean(axis=2, keepdims=True)
    washed = grey + 0.3 * (photo - grey)
    assert metrics.colorfulness(washed) < metrics.colorfulness(photo)


def test_psnr_and_ciede_worsen_with_error(photo):
    noisy = np.clip(photo + 0.05, 0, 1)
    noisier = np.clip(photo + 0.2, 0, 1)
    assert metrics.psnr(photo, noisy) > metrics.psnr(photo, noisier)
    assert metrics.ciede2000(photo, noisy) < metrics.ciede2000(photo, noisier)


def test_mean_scores_averages_fields(photo):
    a = metrics.score(photo, np.clip(photo + 0.1, 0, 1))
    b = metrics.score(photo, np.clip(photo - 0.1, 0, 1))
    mean = metrics.mean_scores([a, b])
    assert mean.ssim == pytest.approx((a.ssim + b.ssim) / 2)


def test_tiny_pictures_score_without_crashing():
    """scikit-image's default 7x7 SSIM window does not fit a 5x5 or a 1x1 photo."""
    rng = np.random.default_rng(1)
    small = rng.random((5, 5, 3)).astype(np.float32)
    assert 0 < metrics.score(small, small * 0.9).ssim <= 1
    dot = rng.random((1, 1, 3)).astype(np.float32)
    assert np.isnan(metrics.score(dot, dot).ssim)
    tiny = [metrics.score(small, small), metrics.score(dot, dot)]
    assert not np.isnan(metrics.mean_scores(tiny).ssim)
