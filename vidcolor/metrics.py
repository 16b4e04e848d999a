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
    return float(peak_signal_noise_ratio(reference, image, data_range=1.0))


def ssim(reference: np.ndarray, image: np.ndarray) -> float:
    return float(structural_similarity(reference, image, channel_axis=2, data_range=1.0))


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
    return ColorScores(**{f: float(np.mean([getattr(s, f) for s in scores])) for f in fields})
