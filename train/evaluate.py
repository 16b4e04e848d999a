"""Score a generator on a folder of colour photos beside the grey baseline.

``python -m vidcolor.train.evaluate WEIGHTS VAL_DIR --size 256`` prints a JSON table used in the
model card: PSNR, SSIM, colourfulness, delta CF and CIEDE2000 for the model and for grey input.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
import torch

from vidcolor.color import join_lab, lab_to_rgb, rgb_to_lab
from vidcolor.metrics import ColorScores, mean_scores, score
from vidcolor.models.generator import ColorGenerator
from vidcolor.models.weights import load_generator

from .data import load_folder


@torch.no_grad()
def predict_rgb(model: ColorGenerator, rgb_uint8: np.ndarray, size: int) -> np.ndarray:
    """Colourise the luminance of a photo at render size ``size`` and rejoin at full size."""
    lab = rgb_to_lab(rgb_uint8.astype(np.float32) / 255.0)
    small = cv2.resize(lab[:, :, 0], (size, size), interpolation=cv2.INTER_AREA)
    ab = model(torch.from_numpy(small)[None, None])[0].permute(1, 2, 0).numpy()
    return join_lab(lab[:, :, 0], ab)


def grey_rgb(rgb_uint8: np.ndarray) -> np.ndarray:
    lab = rgb_to_lab(rgb_uint8.astype(np.float32) / 255.0)
    lab[:, :, 1:] = 0.0
    return lab_to_rgb(lab)


def evaluate_images(
    model: ColorGenerator, images: list[tuple[str, np.ndarray]], size: int, with_grey: bool = False
) -> dict[str, float]:
    was_training = model.training
    model.eval()
    ours: list[ColorScores] = []
    grey: list[ColorScores] = []
    truth_cf: list[float] = []
    for _, rgb in images:
        ref = rgb.astype(np.float32) / 255.0
        s = score(ref, predict_rgb(model, rgb, size))
        ours.append(s)
        truth_cf.append(s.colorfulness - s.delta_cf)
        if with_grey:
            grey.append(score(ref, grey_rgb(rgb)))
    model.train(was_training)
    result = {f"model_{k}": round(v, 4) for k, v in vars(mean_scores(ours)).items()}
    result["truth_colorfulness"] = round(float(np.mean(truth_cf)), 4)
    if with_grey:
        result.update({f"grey_{k}": round(v, 4) for k, v in vars(mean_scores(grey)).items()})
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("weights", type=Path)
    parser.add_argument("val_dir", type=Path)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--limit", type=int, default=None)
    args = parser.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    images = load_folder(args.val_dir, args.limit)
    result = evaluate_images(load_generator(args.weights), images, args.size, with_grey=True)
    print(json.dumps({"images": len(images), "size": args.size, **result}, indent=2))


if __name__ == "__main__":
    main()
