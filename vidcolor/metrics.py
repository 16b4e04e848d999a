"""Image-quality measures for colourisation, computed with scikit-image where one exists.

Images are float RGB in 0..1, shape (H, W, 3). Colourfulness follows Hasler & Suesstrunk (2003);
delta CF is the prediction's colourfulness minus the ground truth's (negative = washed out).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from skimage.color import deltaE_ciede2000, rgb2lab
from skimage.metrics import peak_signal_noise_ratio, structural_similarity


def psnr(reference: np.ndarray, image: np.ndarray) -> float:
    """Infinite for identical pictures (without scikit-image's divide-by-zero warning)."""
    if np.array_equal(reference, image):
        return float("inf")
    return float(peak_signal_noise_ratio(reference, image, data_range=1.0))


def ssim(reference: np.ndarray, image: np.ndarray) -> float:
    side = min(reference.shape[:2])
    if side < 3:
        return float("nan")  # no window fits: SSIM is undefined for a picture this small
    window = min(7, side if side % 2 else side - 1)  # scikit-image's default, or what fits
    return float(
        structural_similarity(reference, image, channel_axis=2, data_range=1.0, win_size=window)
    )


def colorfulness(image: np.ndarray) -> float:
    """Hasler-Suesstrunk colourfulness on the 0..255 scale its thresholds were defined on."""
    rgb = image.astype(np.float64) * 255.0
    rg = rgb[..., 0] - rgb[..., 1]
    yb = 0.5 * (rgb[..., 0] + rgb[..., 1]) - rgb[..., 2]
    return float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))


def ciede2000(reference: np.ndarray, image: np.ndarray) -> float:
    """Mean CIEDE2000 colour difference per pixel."""
    return float(deltaE_ciede2000(rgb2lab(reference), rgb2lab(image)).mean())


@dataclass
class ColorScores:
    psnr: float
    ssim: float
    colorfulness: float
    delta_cf: float
    ciede2000: float


def score(reference: np.ndarray, image: np.ndarray) -> ColorScores:
    cf = colorfulness(image)
    return ColorScores(
        psnr=psnr(reference, image),
        ssim=ssim(reference, image),
        colorfulness=cf,
        delta_cf=cf - colorfulness(reference),
        ciede2000=ciede2000(reference, image),
    )


def mean_scores(scores: list[ColorScores]) -> ColorScores:
    fields = ColorScores.__dataclass_fields__
    # nanmean: SSIM is undefined (NaN) for pictures under 3 pixels on a side
    return ColorScores(**{f: float(np.nanmean([getattr(s, f) for s in scores])) for f in fields})


# --- temporal consistency -----------------------------------------------------------------
#
# Warp error after Lai et al. (2018), "Learning Blind Video Temporal Consistency": frame t+1 is
# warped onto frame t with the flow of a reference film (from t to t+1), and the squared
# difference is averaged over the pixels that the forward-backward check and the motion-
# boundary check keep (``vidcolor.temporal.flow.non_occluded``). The flow comes from the
# reference, never from the film scored, so a film cannot look steady by moving oddly.


def warp_error(first: np.ndarray, second: np.ndarray, flow: np.ndarray, valid: np.ndarray) -> float:
    """Mean over ``valid`` pixels of |first - warp(second, flow)|^2, summed over channels.

    On RGB in 0..1 this is Lai et al.'s E_warp; on Lab a,b it is the chroma warp error (Lab
    units squared), which leaves out the luminance's own warp error and so isolates flicker of
    the colour. NaN where no pixel is valid.
    """
    from vidcolor.temporal.flow import warp

    count = int(valid.sum())
    if count == 0:
        return float("nan")
    diff = first - warp(second, flow)
    squared = diff * diff
    if squared.ndim == 3:
        squared = squared.sum(axis=2)
    return float(squared[valid].sum() / count)


def mean_ab_change(first_ab: np.ndarray, second_ab: np.ndarray) -> float:
    """How far the frame's average colour moved: |mean(a,b) - mean(a,b)'| in Lab units."""
    return float(np.hypot(*(first_ab.reshape(-1, 2).mean(0) - second_ab.reshape(-1, 2).mean(0))))


_QUANTILES = np.linspace(0.01, 0.99, 99)


def ab_distribution_shift(first_ab: np.ndarray, second_ab: np.ndarray) -> float:
    """How far the distribution of colours moved between two frames (Lab units).

    The 1-D Wasserstein distance of the a values plus that of the b values, from their
    quantiles: 0 when the frames hold the same colours in the same amounts, wherever they are.
    """
    q1 = np.quantile(first_ab.reshape(-1, 2), _QUANTILES, axis=0)
    q2 = np.quantile(second_ab.reshape(-1, 2), _QUANTILES, axis=0)
    return float(np.abs(q1 - q2).mean(axis=0).sum())
