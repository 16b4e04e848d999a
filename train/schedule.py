"""The step-based schedule: a pretraining phase, then an adversarial fine-tune.

Learning rates are pure functions of the step (each phase: linear warm-up times a cosine down to
``min_lr_factor``), so a recipe means the same run on any hardware and a resumed run continues
the curve exactly. Wall-clock time only ever stops a sitting (``budget``), never bends the curve.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .recipe import ScheduleSpec

PRETRAIN, ADVERSARIAL = "pretrain", "adversarial"


def warmup_cosine(step: int, length: int, warmup: int, floor: float) -> float:
    """Factor at ``step`` of a phase of ``length`` steps: warm-up x cosine from 1 to ``floor``."""
    warm = min(1.0, (step + 1) / warmup) if warmup > 0 else 1.0
    progress = min(1.0, step / max(1, length))
    return warm * (floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress)))


@dataclass(frozen=True)
class Schedule:
    """Steps ``[0, pretrain_steps)`` pretrain; ``[pretrain_steps, max_steps)`` are adversarial."""

    spec: ScheduleSpec
    adversarial: bool  # whether the loss has a part that needs the discriminator

    @property
    def max_steps(self) -> int:
        return self.spec.max_steps

    @property
    def pretrain_steps(self) -> int:
        if not self.adversarial:
            return self.spec.max_steps
        return 0 if self.spec.pretrain_steps is None else self.spec.pretrain_steps

    def phase(self, step: int) -> str:
        return PRETRAIN if step < self.pretrain_steps else ADVERSARIAL

    def generator_factor(self, step: int) -> float:
        """Generator lr at ``step``, relative to the recipe's ``optim.lr`` / ``encoder_lr``."""
        spec, p = self.spec, self.pretrain_steps
        if step < p:
            return warmup_cosine(step, p, spec.warmup_steps, spec.min_lr_factor)
        # Pure pix2pix (no pretraining): the run's own warm-up applies to its only phase.
        warmup = spec.finetune_warmup_steps if p > 0 else spec.warmup_steps
        scale = spec.finetune_lr_scale if p > 0 else 1.0
        return scale * warmup_cosine(step - p, spec.max_steps - p, warmup, spec.min_lr_factor)

    def discriminator_factor(self, step: int) -> float:
        """Discriminator lr at ``step`` relative to ``discriminator.lr`` (0 while pretraining)."""
        spec, p = self.spec, self.pretrain_steps
        if step < p:
            return 0.0
        warmup = spec.finetune_warmup_steps if p > 0 else spec.warmup_steps
        return warmup_cosine(step - p, spec.max_steps - p, warmup, spec.min_lr_factor)
