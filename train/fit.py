"""Train a generator from a YAML recipe: ``vidcolor train configs/<recipe>.yaml``.

A run lives in one folder (``OUT/<name>``): ``checkpoints/`` (resume points), ``log.jsonl``
(one row per validation pass), ``grids/`` (before/after PNGs), ``recipe.json`` and, at the end,
``generator.safetensors`` (weights + config + recipe: what ``vidcolor --model`` takes).

The schedule is step based (``schedule.py``) and the data stream a pure function of the seed
(``data.py``); every RNG and optimiser state is checkpointed (``checkpoint.py``). So a run may
be stopped at any moment (``budget``, Ctrl-C, a kill) and ``--resume`` ends at the same weights
as one uninterrupted run: bit for bit on the same device and thread count. Periodic validation
colourises through ``TorchEngine.from_model`` and ``vidcolor.api``, the same path as
``vidcolor`` itself, so the logged scores are what the saved weights will give.

``python -m vidcolor.train.fit RECIPE`` is ``vidcolor train``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from vidcolor.atomic import atomic_output
from vidcolor.engines.torch_engine import TorchEngine, resolve_device
from vidcolor.errors import VidcolorError, one_line
from vidcolor.models.weights import fitting_tensors, load_fitting, save_generator
from vidcolor.signals import HANDLED, Interrupted

from .checkpoint import list_checkpoints, load_latest, restore_rng, rng_state, save_checkpoint
from .data import (
    EvalSource,
    SourceImages,
    StepBatches,
    TrainingSet,
    count_source_files,
    find_source_files,
    load_source,
    sample_ab,
    step_loader,
)
from .evaluate import Evaluation, evaluate_images
from .gan import discriminator_loss
from .grid import before_after_grid, write_grid
from .losses import GeneratorLoss
from .recipe import BudgetSpec, Recipe, load_recipe, recipe_differences
from .schedule import ADVERSARIAL, Schedule

__all__ = ["Dist", "TrainProgress", "TrainResult", "load_recipe", "train"]


@dataclass(frozen=True)
class Dist:
    """This process's place among Ray Train's workers (one process: rank 0 of 1)."""

    rank: int = 0
    world: int = 1
    device: str | None = None  # Ray's choice for this worker; None: the recipe's device
    # Ray Train: a handle on the driver's stop flag (a signal reaches the driver, not us)
    stop_flag: Any = None

    @property
    def main(self) -> bool:
        return self.rank == 0

    def any(self, flag: bool) -> bool:
        """True on every rank when it is true on one (a stop must be taken together)."""
        if self.world == 1:
            return flag
        value = torch.tensor([1.0 if flag else 0.0], device=self.device)
        torch.distributed.all_reduce(value, op=torch.distributed.ReduceOp.MAX)
        return bool(value.item() > 0)

    def stop_requested(self) -> bool:
        """Whether the driver was asked to stop (rank 0 asks; ``any`` tells the others)."""
        if self.stop_flag is None or not self.main:
            return False
        import ray

        return bool(ray.get(self.stop_flag.requested.remote()))

    def mean(self, parts: dict[str, float]) -> dict[str, float]:
        """The loss parts averaged over the ranks: the log shows the global batch's."""
        if self.world == 1:
            return parts
        keys = list(parts)  # the same order on every rank
        values = torch.tensor([parts[k] for k in keys], dtype=torch.float64, device=self.device)
        torch.distributed.all_reduce(values)
        return {k: float(v) / self.world for k, v in zip(keys, values.tolist(), strict=True)}


@dataclass(frozen=True)
class TrainResult:
    weights: Path
    step: int
    finished: bool  # the schedule ran to its last step (else a budget stopped this sitting)


@dataclass
class RunFolder:
    root: Path

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def log(self) -> Path:
        return self.root / "log.jsonl"

    @property
    def grids(self) -> Path:
        return self.root / "grids"

    @property
    def weights(self) -> Path:
        return self.root / "generator.safetensors"


@dataclass(frozen=True)
class ValSet:
    label: str
    source: EvalSource
    limit: int

    def photos(self, limit: int | None = None) -> Iterator[tuple[str, np.ndarray]]:
        """The first ``limit`` (default: the set's own limit) photos, read from disk."""
        return self.source.images(self.limit if limit is None else limit)


@dataclass
class Components:
    """What a recipe builds, checked before any data loads: a typo fails in a second."""

    generator: nn.Module
    loss: GeneratorLoss  # adversarial parts are left out while no discriminator is passed
    discriminator: nn.Module | None  # None: no part of the loss is adversarial


def build_components(recipe: Recipe) -> Components:
    """Generator, loss and discriminator, built in a fixed order after seeding torch."""
    from vidcolor.models.registry import build_generator

    from .gan import build_discriminator
    from .losses import build_loss

    torch.manual_seed(recipe.seed)
    generator = build_generator(recipe.generator)
    if recipe.init is not None:
        fitting_tensors(generator, recipe.init)  # a wrong file fails now, not after loading
    loss = build_loss(recipe.loss)
    loss.check_generator(generator)
    adversarial = loss.needs_discriminator
    pretrain = recipe.schedule.pretrain_steps
    if pretrain is not None and not adversarial:
        raise VidcolorError(
            "recipe: schedule.pretrain_steps is set but no loss part is adversarial"
        )
    if pretrain and all(part.needs_discriminator for _, part in loss.parts):
        raise VidcolorError(
            "recipe: schedule.pretrain_steps needs a loss part that is not adversarial "
            "(e.g. {kind: l1}) to pretrain with"
        )
    discriminator = build_discriminator(recipe.discriminator.net) if adversarial else None
    if not adversarial and recipe.discriminator.net:
        with torch.random.fork_rng():  # its keys are checked all the same; no RNG is used up
            build_discriminator(recipe.discriminator.net)
    return Components(generator, loss, discriminator)


class _GeneratorStep(nn.Module):
    """``train_outputs`` as a module's forward, so DDP sees (and syncs) that call."""

    def __init__(self, generator: nn.Module):
        super().__init__()
        self.generator = generator

    def forward(self, lum: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.generator.train_outputs(lum)  # type: ignore[operator]


class _DiscriminatorStep(nn.Module):
    """The discriminator's loss on a real and a fake batch: one forward for DDP."""

    def __init__(self, discriminator: nn.Module, gan: str):
        super().__init__()
        self.discriminator = discriminator
        self.gan = gan

    def forward(self, lum: torch.Tensor, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        return discriminator_loss(self.discriminator, lum, real, fake, gan=self.gan)


def _ddp(module: nn.Module, dist: Dist, device: torch.device) -> nn.Module:
    if dist.world == 1:
        return module
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=ids)


def generator_optimizer(generator: nn.Module, recipe: Recipe) -> torch.optim.Optimizer:
    """AdamW with two groups: the pretrained encoder (``encoder_lr``) and everything else."""
    optim = recipe.optim
    encoder = list(generator.encoder_parameters())  # type: ignore[operator]
    ids = {id(p) for p in encoder}
    rest = [p for p in generator.parameters() if id(p) not in ids]
    groups = [{"params": rest, "lr": optim.lr}]
    if encoder:
        encoder_lr = optim.lr if optim.encoder_lr is None else optim.encoder_lr
        groups.append({"params": encoder, "lr": encoder_lr})
    return torch.optim.AdamW(
        groups, betas=(optim.beta1, optim.beta2), weight_decay=optim.weight_decay
    )


LOG_STATUS_SECONDS = 300.0  # a status line in a log this often: a long run's rate is visible


class TrainProgress:
    """What a person watching sees, on stderr, from the first step on.

    On a terminal: a bar over the schedule with the loss parts, steps/s and ETA. Elsewhere (a
    log file, CI): one plain line after the first step and every ``LOG_STATUS_SECONDS``, and
    one per validation pass, checkpoint and stop, so a log shows the same facts without a
    bar's carriage returns.
    """

    def __init__(
        self,
        max_steps: int,
        start_step: int = 0,
        budget: BudgetSpec | None = None,
        show_bar: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
        enabled: bool = True,
    ):
        self.max_steps, self.start_step = max_steps, start_step
        self.budget = budget or BudgetSpec()
        self.clock = clock
        self.enabled = enabled
        self.bar = tqdm(
            total=max_steps,
            initial=start_step,
            file=sys.stderr,
            disable=(not enabled) or (None if show_bar is None else not show_bar),
            dynamic_ncols=True,
            leave=False,  # the validation lines and the final line stay; the bar goes
            bar_format="{percentage:3.0f}%|{bar}| {desc}",
        )
        self.started = clock()
        self._shown = -math.inf

    def elapsed(self) -> float:
        return self.clock() - self.started

    def rate(self, step: int) -> float:
        elapsed = self.elapsed()
        return (step - self.start_step) / elapsed if elapsed > 0 else 0.0

    def sitting_left(self, step: int) -> float:
        """Seconds until this sitting's budget stops it (inf without a budget)."""
        left = math.inf
        rate = self.rate(step)
        if self.budget.max_steps is not None and rate > 0:
            left = (self.start_step + self.budget.max_steps - step) / rate
        if self.budget.max_minutes is not None:
            left = min(left, self.budget.max_minutes * 60 - self.elapsed())
        return max(0.0, left)

    def status(self, step: int, parts: Mapping[str, float], phase: str = "") -> str:
        rate = self.rate(step)
        left = (self.max_steps - step) / rate if rate > 0 else math.inf
        losses = ", ".join(f"{k} {v:.4f}" for k, v in parts.items())
        text = f"step {step}/{self.max_steps}"
        text += f" ({phase})" if phase else ""
        text += f", {losses}" if losses else ""
        text += f", {rate:.2f} steps/s, ETA {_interval(left)}"
        sitting = self.sitting_left(step)
        if sitting < left:
            text += f" (this sitting stops in {_interval(sitting)})"
        return text

    def step(self, step: int, parts: Mapping[str, float], phase: str = "") -> None:
        if not self.enabled:
            return
        now = self.clock()
        if self.bar.disable:
            if step == self.start_step + 1 or now - self._shown >= LOG_STATUS_SECONDS:
                self._shown = now
                self.write(self.status(step, parts, phase))
            return
        if now - self._shown >= 0.5 or step == self.start_step + 1:
            self._shown = now
            self.bar.n = step
            self.bar.set_description_str(self.status(step, parts, phase), refresh=False)
            self.bar.refresh()

    def write(self, line: str) -> None:
        if self.enabled:
            tqdm.write(line, file=sys.stderr)

    def close(self) -> None:
        self.bar.close()


def _interval(seconds: float) -> str:
    return "?" if not math.isfinite(seconds) else tqdm.format_interval(seconds)


class _Running:
    """Sums of the loss parts since the last validation (checkpointed: logs resume exactly)."""

    def __init__(self, state: Mapping[str, Sequence[float]] | None = None):
        self.sums: dict[str, list[float]] = {k: list(v) for k, v in (state or {}).items()}

    def add(self, parts: Mapping[str, float]) -> None:
        for key, value in parts.items():
            entry = self.sums.setdefault(key, [0.0, 0.0])
            entry[0] += float(value)
            entry[1] += 1.0

    def means(self) -> dict[str, float]:
        return {k: s / n for k, (s, n) in self.sums.items() if n}

    def state(self) -> dict[str, list[float]]:
        return {k: list(v) for k, v in self.sums.items()}


class _StopRequests:
    """Defers SIGINT/SIGTERM/SIGHUP to the end of the step, so the run can checkpoint first.

    Only in the main thread (Python's rule for signal handlers); elsewhere signals keep
    their handlers and a kill is caught up on by the last periodic checkpoint.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self._saved: dict[int, Any] = {}

    def _note(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is None:
            self.signum = signum
            tqdm.write(
                f"{signal.Signals(signum).name}: stopping after this step to checkpoint",
                file=sys.stderr,
            )

    @contextmanager
    def active(self) -> Iterator[_StopRequests]:
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        self._saved = {s: signal.signal(s, self._note) for s in HANDLED}
        try:
            yield self
        finally:
            for s, handler in self._saved.items():
                signal.signal(s, handler)


def _write_line(path: Path, row: Mapping[str, Any]) -> None:
    with open(path, "a") as log:
        log.write(json.dumps(row) + "\n")
        log.flush()


def _rows_until(path: Path, step: int) -> list[str]:
    """The log rows of steps up to ``step`` (a resumed run rewrites what came after)."""
    if not path.exists():
        return []
    kept = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue  # a line cut by a kill
        if isinstance(row, dict) and isinstance(row.get("step"), int) and row["step"] <= step:
            kept.append(line)
    return kept


def _replace_text(path: Path, text: str) -> None:
    with atomic_output(path, overwrite=True) as tmp:
        tmp.write_text(text)


def _prepare_run_folder(run: RunFolder, resume: bool, overwrite: bool) -> None:
    if resume:
        return
    existing = list_checkpoints(run.checkpoints)
    if existing and not overwrite:
        raise VidcolorError(
            f"{one_line(str(run.root))} already holds a run (checkpoint at step "
            f"{existing[-1][0]}); continue it with --resume or start over with --overwrite"
        )
    if overwrite:
        shutil.rmtree(run.checkpoints, ignore_errors=True)
        shutil.rmtree(run.grids, ignore_errors=True)
        run.weights.unlink(missing_ok=True)
    try:
        run.root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise VidcolorError(f"cannot create {run.root}: {exc.strerror or exc}") from exc
    _replace_text(run.log, "")


def _check_resumable(recipe: Recipe, state: Mapping[str, Any], path: Path) -> None:
    differences = recipe_differences(state["identity"], recipe.identity())
    if differences:
        shown = "; ".join(differences[:3]) + ("; ..." if len(differences) > 3 else "")
        raise VidcolorError(
            f"--resume: the recipe differs from the one {one_line(str(path))} was trained "
            f"with ({shown}); resume with the same recipe, or train into another --out"
        )


def _load_sources(
    recipe: Recipe, show: bool | None, main: bool
) -> tuple[list[SourceImages], float]:
    """Every source, decoded, and the seconds it took."""
    started = time.perf_counter()
    budget = recipe.data.max_memory_mb * 2**20
    threads = max(1, recipe.threads or torch.get_num_threads())
    total = sum(count_source_files(s.path) for s in recipe.data.sources)
    sources = []
    with tqdm(
        total=total,
        desc="loading training photos",
        unit="file",
        file=sys.stderr,
        leave=False,
        disable=(not main) or (None if show is None else not show),
    ) as bar:
        for spec in recipe.data.sources:
            loaded = load_source(
                spec.path,
                recipe.data.short_side,
                recipe.data.min_chroma,
                threads=threads,
                memory_left=budget,
                on_file=lambda: bar.update(1),
                hold_out=spec.hold_out,
            )
            budget -= loaded.nbytes
            sources.append(loaded)
    return sources, time.perf_counter() - started


def _device(recipe: Recipe, dist: Dist) -> torch.device:
    device = torch.device(dist.device or resolve_device(recipe.device))
    if device.type == "cuda" or recipe.precision == "fp32":
        return device
    if recipe.precision == "fp16":
        raise VidcolorError(
            f"precision fp16 needs a CUDA device (this run is on {device}); "
            "use bf16 or fp32 on the CPU"
        )
    if not cpu_has_native_bf16():
        raise VidcolorError(
            "precision bf16 on the CPU needs bfloat16 instructions (AVX512-BF16 or AMX), "
            "which this CPU lacks: it would run slower than fp32; use precision: fp32"
        )
    return device


def cpu_has_native_bf16() -> bool:
    """bf16 autocast only pays on a CPU that computes in bf16 (about 1.45x a step here)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def train(
    recipe: Recipe,
    out_dir: Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    show_bar: bool | None = None,
    dist: Dist | None = None,
) -> TrainResult:
    """Run (or continue, with ``resume``) a recipe in ``out_dir``; see the module docstring."""
    dist = dist or Dist()
    run = RunFolder(Path(out_dir))
    device = _device(recipe, dist)
    if recipe.threads is not None:
        torch.set_num_threads(recipe.threads)
    # Every input is checked before the slow part starts.
    components = build_components(recipe)
    val_sources = [(spec, EvalSource(spec.path, spec.held_out)) for spec in recipe.val.sets]
    state: dict[str, Any] | None = None
    if resume:
        path, state = load_latest(run.checkpoints)
        _check_resumable(recipe, state, path)
    for source in recipe.data.sources:
        find_source_files(source.path)
    if dist.main:
        _prepare_run_folder(run, resume, overwrite)

    sources, load_seconds = _load_sources(recipe, show_bar, dist.main)
    prints = [s.fingerprint() for s in sources]
    if state is not None and state["data"] != prints:
        changed = [s.summary() for s, old in zip(sources, state["data"], strict=False)]
        raise VidcolorError(
            "--resume: the training photos differ from the run's (now: "
            f"{'; '.join(changed)}); resume with the same data, or train into another --out"
        )
    # Validation photos are read anew at each pass (a user's may be large), once here to
    # find any that cannot be read before the first hour of training, not after it.
    val = [ValSet(spec.label, source, spec.images) for spec, source in val_sources]
    counts = [sum(1 for _ in v.photos()) for v in val]
    empty = [v.label for v, n in zip(val, counts, strict=True) if n == 0]
    if empty:
        raise VidcolorError(
            f"val.sets: no photos to validate on in {', '.join(map(one_line, empty))} (is its "
            "held_out share empty?)"
        )
    if dist.main:
        tqdm.write(
            f"loaded {sum(len(s) for s in sources)} training photos "
            f"({'; '.join(s.summary() for s in sources)}) in {load_seconds:.0f}s; validating "
            f"on {', '.join(f'{v.label} ({n} photos)' for v, n in zip(val, counts, strict=True))}",
            file=sys.stderr,
        )

    trainer = _Trainer(recipe, components, sources, val, run, device, dist, show_bar)
    if state is not None:
        trainer.load_state(state)
    else:
        trainer.start_fresh()
        if dist.main:
            text = json.dumps(recipe.to_dict(), indent=2) + "\n"
            _replace_text(run.root / "recipe.json", text)
    return trainer.fit()


class _Trainer:
    """One run's models, optimisers and loop; ``state()`` / ``load_state()`` are its checkpoint."""

    def __init__(
        self,
        recipe: Recipe,
        parts: Components,
        sources: list[SourceImages],
        val: list[ValSet],
        run: RunFolder,
        device: torch.device,
        dist: Dist,
        show_bar: bool | None,
    ):
        self.recipe, self.run, self.device, self.dist = recipe, run, device, dist
        self.sources, self.val, self.show_bar = sources, val, show_bar
        self.generator = parts.generator
        self.discriminator = parts.discriminator
        self.loss = parts.loss
        self.schedule = Schedule(recipe.schedule, adversarial=self.discriminator is not None)
        self.generator.to(device)
        self.generator_step = _ddp(_GeneratorStep(self.generator), dist, device)
        self.opt_g = generator_optimizer(self.generator, recipe)
        self.sched_g = torch.optim.lr_scheduler.LambdaLR(self.opt_g, self.schedule.generator_factor)
        self.opt_d: torch.optim.Optimizer | None = None
        self.sched_d: torch.optim.lr_scheduler.LambdaLR | None = None
        self.discriminator_step: nn.Module | None = None
        if self.discriminator is not None:
            self.discriminator.to(device)
            spec = recipe.discriminator
            self.discriminator_step = _ddp(
                _DiscriminatorStep(self.discriminator, self.loss.gan or "vanilla"), dist, device
            )
            self.opt_d = torch.optim.AdamW(
                self.discriminator.parameters(),
                lr=spec.lr,
                betas=(spec.beta1, spec.beta2),
                weight_decay=spec.weight_decay,
            )
            self.sched_d = torch.optim.lr_scheduler.LambdaLR(
                self.opt_d, self.schedule.discriminator_factor
            )
        cuda = device.type == "cuda"
        self.autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(recipe.precision)
        self.scaler = _grad_scaler(cuda, enabled=recipe.precision == "fp16")
        self.dataset = TrainingSet(
            sources,
            [s.weight for s in recipe.data.sources],
            recipe.data.crop,
            seed=recipe.seed,
            min_scale=recipe.data.min_scale,
            max_scale=recipe.data.max_scale,
            flip=recipe.data.flip,
            epoch_size=recipe.data.epoch_size,
        )
        self.engine = TorchEngine.from_model(self.generator, device=str(device))  # type: ignore[arg-type]
        self.step = 0
        self.minutes_before = 0.0  # training minutes of earlier sittings
        self.running = _Running()
        self.grey: dict[str, tuple[Any, float]] = {}

    # --- checkpoints -----------------------------------------------------------------------

    def start_fresh(self) -> None:
        """Step 0: the pretrained encoder, and the loss's statistics of the training colours."""
        self.generator.load_pretrained()  # type: ignore[operator]
        if self.recipe.init is not None:
            loaded, fresh = load_fitting(self.generator, self.recipe.init)
            if self.dist.main:
                tqdm.write(
                    f"init: {len(loaded)} tensors from {one_line(str(self.recipe.init))}; "
                    f"{len(fresh)} start fresh{' (' + ', '.join(fresh[:4]) + ')' if fresh else ''}",
                    file=sys.stderr,
                )
        if self.loss.uses_statistics:
            self.loss.fit_statistics(sample_ab(self.sources, 2000, self.recipe.seed))
        self.loss.to(self.device)

    def state(self, minutes: float) -> dict[str, Any]:
        return {
            "step": self.step,
            "samples": self.step * self.recipe.optim.batch_size,
            "epoch": self.step * self.recipe.optim.batch_size / self.dataset.epoch_size,
            "minutes": minutes,
            "recipe": self.recipe.to_dict(),
            "identity": self.recipe.identity(),
            "data": [s.fingerprint() for s in self.sources],
            "world": self.dist.world,
            "generator": self.generator.state_dict(),
            "discriminator": None
            if self.discriminator is None
            else self.discriminator.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": None if self.opt_d is None else self.opt_d.state_dict(),
            "sched_g": self.sched_g.state_dict(),
            "sched_d": None if self.sched_d is None else self.sched_d.state_dict(),
            "scaler": self.scaler.state_dict(),
            "loss": self.loss.state_dict(),
            "running": self.running.state(),
            "rng": rng_state(),
        }

    def load_state(self, state: Mapping[str, Any]) -> None:
        self.generator.load_state_dict(state["generator"])
        self.loss.load_state_dict(state["loss"])
        self.loss.to(self.device)
        self.opt_g.load_state_dict(state["opt_g"])
        self.sched_g.load_state_dict(state["sched_g"])
        if self.discriminator is not None:
            self.discriminator.load_state_dict(state["discriminator"])
            assert self.opt_d is not None and self.sched_d is not None
            self.opt_d.load_state_dict(state["opt_d"])
            self.sched_d.load_state_dict(state["sched_d"])
        if state["scaler"]:
            self.scaler.load_state_dict(state["scaler"])
        self.step = int(state["step"])
        self.minutes_before = float(state["minutes"])
        self.running = _Running(state["running"])
        restore_rng(state["rng"])
        if self.dist.main:
            rows = _rows_until(self.run.log, self.step)
            _replace_text(self.run.log, "".join(f"{row}\n" for row in rows))
            tqdm.write(
                f"resuming at step {self.step}/{self.schedule.max_steps} "
                f"({self.minutes_before:.1f} min trained so far)",
                file=sys.stderr,
            )

    def checkpoint(self, progress: TrainProgress) -> None:
        if not self.dist.main:
            return
        minutes = self.minutes_before + progress.elapsed() / 60
        path = save_checkpoint(
            self.run.checkpoints, self.step, self.state(minutes), self.recipe.checkpoint.keep
        )
        if progress.bar.disable:
            progress.write(f"checkpoint: {path}")

    # --- one step --------------------------------------------------------------------------

    def _autocast(self) -> Any:
        if self.autocast_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def train_step(self, lum: torch.Tensor, ab: torch.Tensor) -> dict[str, float]:
        adversarial = self.schedule.phase(self.step) == ADVERSARIAL
        self.generator.train()
        with self._autocast():
            outputs = self.generator_step(lum)
        parts: dict[str, float] = {}
        if adversarial:
            assert self.discriminator is not None and self.discriminator_step is not None
            assert self.opt_d is not None
            self.discriminator.train()
            self.discriminator.requires_grad_(True)
            with self._autocast():
                d_loss = self.discriminator_step(lum, ab, outputs["ab"].detach())
            self.opt_d.zero_grad(set_to_none=True)
            self.scaler.scale(d_loss).backward()
            self.scaler.step(self.opt_d)
            parts["d"] = float(d_loss.item())
            self.discriminator.requires_grad_(False)  # the generator's step leaves it alone
        with self._autocast():
            total, named = self.loss(
                outputs, ab, lum, discriminator=self.discriminator if adversarial else None
            )
        self.opt_g.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        if self.recipe.optim.grad_clip is not None:
            self.scaler.unscale_(self.opt_g)
            nn.utils.clip_grad_norm_(self.generator.parameters(), self.recipe.optim.grad_clip)
        self.scaler.step(self.opt_g)
        self.scaler.update()
        self.sched_g.step()
        if self.sched_d is not None:
            with warnings.catch_warnings():  # it follows the step even while pretraining
                warnings.filterwarnings(
                    "ignore", "Detected call of `lr_scheduler.step", UserWarning
                )
                self.sched_d.step()
        self.step += 1
        return {"loss": float(total.item()), **{k: float(v) for k, v in named.items()}, **parts}

    # --- validation ------------------------------------------------------------------------

    def validate(self, progress: TrainProgress) -> None:
        """Score every val set (grey baseline once per sitting), log a row, write a grid."""
        if not self.dist.main:
            return
        started = time.perf_counter()
        scores: dict[str, dict[str, Any]] = {}
        for val_set in self.val:
            label = val_set.label
            cached = self.grey.get(label)
            result = evaluate_images(
                self.engine, val_set.photos(), self.recipe.val.size, with_grey=cached is None
            )
            if cached is None:
                self.grey[label] = (result.grey, result.truth_colorfulness)
            else:
                result = dataclasses.replace(result, grey=cached[0])
            scores[label] = {"images": result.images, **result.flat()}
            progress.write(_val_line(self.step, label, result))
        count = self.recipe.val.grid
        shown = [p for v in self.val for p in v.photos(min(count, v.limit))] if count else []
        if shown:
            picture = before_after_grid(self.engine, shown, self.recipe.val.size)
            write_grid(self.run.grids / f"step-{self.step:08d}.png", picture)
        means = self.running.means()
        self.running = _Running()
        row = {
            "step": self.step,
            "phase": self.schedule.phase(max(0, self.step - 1)),
            "epoch": round(self.step * self.recipe.optim.batch_size / self.dataset.epoch_size, 4),
            "minutes": round(self.minutes_before + progress.elapsed() / 60, 2),
            "lr": self.opt_g.param_groups[0]["lr"],
            "loss": {k: round(v, 6) for k, v in means.items()},
            "steps_per_s": round(progress.rate(self.step), 4),
            "val_seconds": round(time.perf_counter() - started, 1),
            "val": scores,
        }
        _write_line(self.run.log, row)

    # --- the loop --------------------------------------------------------------------------

    def fit(self) -> TrainResult:
        recipe, schedule = self.recipe, self.schedule
        start = self.step
        stop = schedule.max_steps
        if recipe.budget.max_steps is not None:
            stop = min(stop, start + recipe.budget.max_steps)
        batches = StepBatches(recipe.optim.batch_size, start, stop, self.dist.rank, self.dist.world)
        loader = step_loader(
            self.dataset, batches, recipe.data.workers, pin_memory=self.device.type == "cuda"
        )
        progress = TrainProgress(
            schedule.max_steps, start, recipe.budget, self.show_bar, enabled=self.dist.main
        )
        stops = _StopRequests()
        reason = "finished"
        try:
            with stops.active():
                for lum, ab in loader:
                    lum = lum.to(self.device, non_blocking=True)
                    ab = ab.to(self.device, non_blocking=True)
                    parts = self.dist.mean(self.train_step(lum, ab))
                    if not math.isfinite(parts["loss"]):  # every rank sees the same mean
                        raise VidcolorError(
                            f"training diverged at step {self.step}: the loss is "
                            f"{parts['loss']}; lower optim.lr or the loss weights (nothing of "
                            "this step was saved)"
                        )
                    self.running.add(parts)
                    progress.step(self.step, parts, schedule.phase(self.step - 1))
                    last = self.step == schedule.max_steps
                    if self.step % recipe.val.every_steps == 0 or last:
                        self.validate(progress)
                    out_of_time = (
                        recipe.budget.max_minutes is not None
                        and progress.elapsed() >= recipe.budget.max_minutes * 60
                    )
                    signalled = stops.signum is not None or self.dist.stop_requested()
                    halt = self.dist.any(out_of_time or signalled)
                    if self.step % recipe.checkpoint.every_steps == 0 or last or halt:
                        self.checkpoint(progress)
                    if halt:
                        reason = "budget.max_minutes" if out_of_time else "signal"
                        break
                else:
                    if self.step < schedule.max_steps:
                        reason = "budget.max_steps"
                        if self.step % recipe.checkpoint.every_steps:
                            self.checkpoint(progress)
        finally:
            progress.close()
        if stops.signum is not None:
            raise Interrupted(stops.signum)
        return self._finish(progress, reason)

    def _finish(self, progress: TrainProgress, reason: str) -> TrainResult:
        finished = self.step >= self.schedule.max_steps
        minutes = self.minutes_before + progress.elapsed() / 60
        if self.dist.main:
            info = {
                "step": str(self.step),
                "max_steps": str(self.schedule.max_steps),
                "complete": "yes" if finished else "no",
                "train_minutes": f"{minutes:.1f}",
                "recipe": json.dumps(self.recipe.to_dict()),
                "data": json.dumps(
                    [
                        {"source": s.name, "photos": len(s), "weight": spec.weight}
                        for s, spec in zip(self.sources, self.recipe.data.sources, strict=True)
                    ]
                ),
            }
            save_generator(self.generator, self.run.weights, info)  # type: ignore[arg-type]
            if finished:
                line = f"done: {self.step} steps in {minutes:.1f} min -> {self.run.weights}"
            else:
                line = (
                    f"stopped at step {self.step}/{self.schedule.max_steps} ({reason}) after "
                    f"{minutes:.1f} min in all; continue with --resume (weights so far: "
                    f"{self.run.weights})"
                )
            progress.write(one_line(line))
        return TrainResult(self.run.weights, self.step, finished)


def _grad_scaler(cuda: bool, enabled: bool) -> Any:
    """fp16's loss scaler (a no-op otherwise); torch.amp's, or torch.cuda.amp's before 2.3."""
    if hasattr(torch.amp, "GradScaler"):
        return torch.amp.GradScaler("cuda" if cuda else "cpu", enabled=enabled)
    return torch.cuda.amp.GradScaler(enabled=enabled)


def _val_line(step: int, label: str, scores: Evaluation) -> str:
    s, g = scores.model, scores.grey
    grey = "" if g is None else f" (grey {g.psnr:.2f} dB, {g.ciede2000:.2f})"
    return one_line(
        f"step {step}: {label} ({scores.images} photos): PSNR {s.psnr:.2f} dB, "
        f"SSIM {s.ssim:.4f}, colourfulness {s.colorfulness:.1f} "
        f"(truth {scores.truth_colorfulness:.1f}), CIEDE2000 {s.ciede2000:.2f}{grey}"
    )


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m vidcolor.train.fit``: the same command as ``vidcolor train``."""
    from vidcolor.cli.train import run_standalone, train_command

    run_standalone(train_command, "python -m vidcolor.train.fit", argv)


if __name__ == "__main__":
    main()
