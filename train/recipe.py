"""Training recipes: a YAML file, optional ``--set key=value`` overrides, checked up front.

Data paths in the file are relative to the file itself (a recipe means the same wherever it is
run from); paths given with ``--set`` are relative to the current directory, like any other
command-line path. Every key is checked against the dataclasses below before any data is
loaded, so a typo (``budget.max_minuts``) fails at once with one line, not after an hour.

The schema (every key; ``*`` marks the required ones). Numbers must be finite; counts, sizes,
rates and budgets positive::

    name*: lite0-default        # the run folder OUT/<name>: one plain folder name
    seed: 0                     # init, data order and augmentation follow from it; 0..2^32-1
    device: auto                # auto | cpu | cuda | cuda:N
    precision: fp32             # fp32 | bf16 | fp16 autocast: fp16 on CUDA only (with a
                                #   GradScaler), bf16 on CUDA or a CPU with bf16 instructions
    threads: null               # torch CPU threads (null: torch's default)
    generator: {arch: ...}      # handed as is to vidcolor.models.registry.build_generator
    init: null                  # a trained generator (.safetensors) to start from, relative to
                                #   this file: its tensors that fit (name and shape) replace the
                                #   fresh ones, e.g. the shipped model under a new head; a file
                                #   fitting under half the network's weights is refused
    data:
      sources*:                 # mixed by weight: a sample is drawn from source i with
        - path: ../data/train   #   probability weight_i / sum(weights); a path is a folder of
          weight: 1             #   .tar shards (KEY.jpg + KEY.json) and/or photos, searched
        - path: ~/my-photos     #   recursively (hidden files skipped), or one .tar file
          weight: 1
          hold_out: 0.0         # this share of the photos (in [0, 1), by a hash of each file
                                #   name, across all shards) is never trained on
      short_side: 192           # photos are decoded once and kept in memory at this short side
      max_memory_mb: 4096       # ... and the run refuses to start if they would take more
      min_chroma: 3.0           # photos whose mean Lab chroma is below this are skipped (grey)
      crop: 160                 # random resized square crops, this many pixels a side (a
                                #   multiple of 32, at most short_side)
      min_scale: 0.55           # crop side as a fraction of the short side: uniform in
      max_scale: 1.0            #   [min_scale, max_scale]
      flip: true                # random horizontal flips
      epoch_size: null          # samples per epoch (a reshuffle; at most 10 million); null:
                                #   all sources' photos
      workers: 1                # DataLoader worker processes (0: in the training process)
    loss*:                      # handed to vidcolor.train.losses.build_loss; parts that need
      - {kind: l1, weight: 100} #   a discriminator (adversarial) are off while pretraining
      - {kind: adversarial, gan: lsgan, weight: 1}
    discriminator:              # only used when a loss part needs one
      net: {}                   # keyword arguments of vidcolor.train.gan.PatchDiscriminator
      lr: 2.0e-4
      beta1: 0.5
      beta2: 0.999
      weight_decay: 0.0
    optim*:                     # AdamW for the generator
      batch_size*: 16           # the global batch (split evenly over --workers)
      lr*: 1.0e-3               # decoder and head
      encoder_lr: null          # the pretrained encoder (null: lr)
      weight_decay: 0.0         # >= 0; the betas (here and for the discriminator) in [0, 1)
      beta1: 0.9
      beta2: 0.999
      grad_clip: null           # max global gradient norm (null: no clipping)
    schedule*:                  # step based: the same recipe means the same run anywhere
      max_steps*: 40000         # optimiser steps of the whole run
      warmup_steps: 0           # linear warm-up, then cosine down to min_lr_factor
      min_lr_factor: 0.0
      pretrain_steps: null      # steps before the adversarial phase (null: 0 when the loss
                                #   has an adversarial part; the loss must have one otherwise)
      finetune_lr_scale: 1.0    # generator lr of the adversarial phase, relative to optim.lr;
      finetune_warmup_steps: 0  #   that phase has its own warm-up and cosine
    budget:                     # when THIS sitting stops (a checkpoint is written; --resume
      max_minutes: null         #   continues the schedule where it stopped): minutes of
      max_steps: null           #   training (loading not counted) or steps, of this sitting
    checkpoint:
      every_steps: 1000         # also at the end and when the budget stops the sitting
      keep: 2                   # the newest checkpoints kept in OUT/<name>/checkpoints
    val*:
      sets*:                    # scored beside the grey baseline through vidcolor's engine
        - {path: ../data/val, images: 64}        # first `images` photos (name: folder name)
        - {path: ~/my-photos, held_out: 0.05, name: mine}  # that source's held-out share
      every_steps*: 500
      size: 160                 # render size, as ``vidcolor --render-size``
      grid: 6                   # first N photos of each set in the before/after grid PNG

Resuming (``--resume``) refuses a recipe whose training keys differ from the run's: everything
except ``name``, ``device``, ``precision``, ``threads``, ``data.workers``,
``data.max_memory_mb``, ``budget``, ``checkpoint``, ``val`` and the sources' paths (which may
move; their photos are compared instead, see ``data.SourceImages.fingerprint``).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import os
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vidcolor.engines import is_device_name
from vidcolor.errors import VidcolorError

SIZE_MULTIPLE = 32  # the generators' total stride: crops and render sizes are multiples of it
PRECISIONS = ("fp32", "bf16", "fp16")
MAX_EPOCH_SIZE = 10_000_000  # the epoch's sample order is 16 bytes a sample in memory
MAX_RECIPE_BYTES = 1 << 20  # a recipe is a page of YAML: /dev/zero is not


@dataclass(frozen=True)
class SourceSpec:
    path: Path
    weight: float = 1.0
    hold_out: float = 0.0


@dataclass(frozen=True)
class DataSpec:
    sources: list[SourceSpec]
    short_side: int = 192
    max_memory_mb: int = 4096
    min_chroma: float = 3.0
    crop: int = 160
    min_scale: float = 0.55
    max_scale: float = 1.0
    flip: bool = True
    epoch_size: int | None = None
    workers: int = 1


@dataclass(frozen=True)
class DiscriminatorSpec:
    net: dict[str, Any] = field(default_factory=dict)
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    weight_decay: float = 0.0


@dataclass(frozen=True)
class OptimSpec:
    batch_size: int
    lr: float
    encoder_lr: float | None = None
    weight_decay: float = 0.0
    beta1: float = 0.9
    beta2: float = 0.999
    grad_clip: float | None = None


@dataclass(frozen=True)
class ScheduleSpec:
    max_steps: int
    warmup_steps: int = 0
    min_lr_factor: float = 0.0
    pretrain_steps: int | None = None
    finetune_lr_scale: float = 1.0
    finetune_warmup_steps: int = 0


@dataclass(frozen=True)
class BudgetSpec:
    """This sitting's stop conditions (whichever comes first); the schedule does not see them."""

    max_minutes: float | None = None
    max_steps: int | None = None


@dataclass(frozen=True)
class CheckpointSpec:
    every_steps: int = 1000
    keep: int = 2


@dataclass(frozen=True)
class ValSetSpec:
    path: Path
    images: int = 64
    name: str | None = None
    held_out: float | None = None

    @property
    def label(self) -> str:
        return self.name or self.path.name or str(self.path)


@dataclass(frozen=True)
class ValSpec:
    sets: list[ValSetSpec]
    every_steps: int
    size: int = 160
    grid: int = 6


@dataclass(frozen=True)
class Recipe:
    name: str
    data: DataSpec
    loss: list[dict[str, Any]]
    optim: OptimSpec
    schedule: ScheduleSpec
    val: ValSpec
    seed: int = 0
    device: str = "auto"
    precision: str = "fp32"
    threads: int | None = None
    generator: dict[str, Any] = field(default_factory=dict)
    init: Path | None = None
    discriminator: DiscriminatorSpec = field(default_factory=DiscriminatorSpec)
    budget: BudgetSpec = field(default_factory=BudgetSpec)
    checkpoint: CheckpointSpec = field(default_factory=CheckpointSpec)

    def __post_init__(self) -> None:
        data, optim, schedule, val = self.data, self.optim, self.schedule, self.val
        checks = {
            "data.sources": len(data.sources) >= 1,
            "data.sources.weight": all(s.weight > 0 for s in data.sources),
            "data.sources.hold_out": all(0 <= s.hold_out < 1 for s in data.sources),
            "data.short_side": data.short_side >= 1,
            "data.max_memory_mb": data.max_memory_mb >= 1,
            "data.min_chroma": data.min_chroma >= 0,
            "data.crop": SIZE_MULTIPLE <= data.crop <= data.short_side
            and data.crop % SIZE_MULTIPLE == 0,
            "data.min_scale": 0 < data.min_scale <= data.max_scale,
            "data.max_scale": data.max_scale <= 1,
            "data.epoch_size": data.epoch_size is None or 1 <= data.epoch_size <= MAX_EPOCH_SIZE,
            "data.workers": data.workers >= 0,
            "loss": len(self.loss) >= 1,
            "optim.batch_size": optim.batch_size >= 1,
            "optim.lr": optim.lr > 0,
            "optim.encoder_lr": optim.encoder_lr is None or optim.encoder_lr >= 0,
            "optim.grad_clip": optim.grad_clip is None or optim.grad_clip > 0,
            "optim.weight_decay": optim.weight_decay >= 0,
            "optim.beta1": 0 <= optim.beta1 < 1,
            "optim.beta2": 0 <= optim.beta2 < 1,
            "discriminator.beta1": 0 <= self.discriminator.beta1 < 1,
            "discriminator.beta2": 0 <= self.discriminator.beta2 < 1,
            "discriminator.weight_decay": self.discriminator.weight_decay >= 0,
            "seed": 0 <= self.seed < 2**32,
            "schedule.max_steps": schedule.max_steps >= 1,
            "schedule.warmup_steps": schedule.warmup_steps >= 0,
            "schedule.min_lr_factor": 0 <= schedule.min_lr_factor <= 1,
            "schedule.pretrain_steps": schedule.pretrain_steps is None
            or 0 <= schedule.pretrain_steps <= schedule.max_steps,
            "schedule.finetune_lr_scale": schedule.finetune_lr_scale > 0,
            "schedule.finetune_warmup_steps": schedule.finetune_warmup_steps >= 0,
            "discriminator.lr": self.discriminator.lr > 0,
            "budget.max_minutes": self.budget.max_minutes is None or self.budget.max_minutes > 0,
            "budget.max_steps": self.budget.max_steps is None or self.budget.max_steps >= 1,
            "checkpoint.every_steps": self.checkpoint.every_steps >= 1,
            "checkpoint.keep": self.checkpoint.keep >= 1,
            "val.sets": len(val.sets) >= 1,
            "val.sets.images": all(s.images >= 1 for s in val.sets),
            "val.sets.held_out": all(s.held_out is None or 0 < s.held_out < 1 for s in val.sets),
            "val.every_steps": val.every_steps >= 1,
            "val.size": val.size >= SIZE_MULTIPLE,
            "val.grid": val.grid >= 0,
            "threads": self.threads is None or self.threads >= 1,
        }
        wrong = [f"{key} = {_short(self._value(key))}" for key, ok in checks.items() if not ok]
        if wrong:
            raise VidcolorError(
                f"recipe: out of range: {'; '.join(wrong)} (the schema at the top of "
                "train/recipe.py gives each key's range)"
            )
        if not _plain_folder_name(self.name):
            raise VidcolorError(
                f"recipe: name must be a plain folder name (the run folder OUT/<name>), not "
                f"{self.name!r}"
            )
        if not is_device_name(self.device):
            raise VidcolorError(
                f"recipe: device must be auto, cpu, cuda or cuda:N, not {_short(self.device)}"
            )
        if self.precision not in PRECISIONS:
            raise VidcolorError(
                f"recipe: precision must be one of {', '.join(PRECISIONS)}, not {self.precision!r}"
            )
        if not all(isinstance(part, dict) for part in self.loss):
            raise VidcolorError("recipe: loss must be a list of mappings, e.g. [{kind: l1}]")
        labels = [s.label for s in val.sets]
        if len(set(labels)) != len(labels):
            raise VidcolorError(
                f"recipe: val.sets: two sets are named alike ({', '.join(labels)}); give each "
                "a name"
            )
        for number, spec in enumerate(val.sets):
            for source in data.sources:
                # A larger share holds the smaller: only a larger val share overlaps training.
                if (
                    spec.held_out is not None
                    and spec.held_out > source.hold_out
                    and _same_path(spec.path, source.path)
                ):
                    raise VidcolorError(
                        f"recipe: val.sets.{number}.held_out {spec.held_out:g} is more than the "
                        f"hold_out {source.hold_out:g} of the training source at the same path: "
                        "it would validate on photos the run trains on"
                    )

    def _value(self, key: str) -> Any:
        """The value behind a dotted key; a key over a list gives the list's values."""
        values: list[Any] = [self]
        for part in key.split("."):
            values = [
                getattr(v, part)
                for value in values
                for v in (value if isinstance(value, list) else [value])
            ]
        return values[0] if len(values) == 1 else values

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able values (paths as given), recorded in checkpoints and weights."""
        return _plain(dataclasses.asdict(self))

    def identity(self) -> dict[str, Any]:
        """What decides the weights a run ends with: resuming needs these to be equal."""
        out = self.to_dict()
        for key in ("name", "device", "precision", "threads", "budget", "checkpoint", "val"):
            out.pop(key)
        data = out["data"]
        for key in ("workers", "max_memory_mb"):
            data.pop(key)
        # init by its bytes (the file may move), and only where set, as hold_out below
        init = out.pop("init")
        if init is not None:
            out["init_sha256"] = init_digest(Path(init))
        # hold_out only where set, so that runs from before the key resume as they were
        data["sources"] = [
            {"weight": s["weight"], **({"hold_out": s["hold_out"]} if s["hold_out"] else {})}
            for s in data["sources"]
        ]
        return out


def init_digest(path: Path) -> str:
    """sha256 of the ``init`` weights, or one line saying why they cannot be read."""
    from vidcolor.hashing import file_sha256

    try:
        return file_sha256(path)
    except OSError as exc:
        raise VidcolorError(f"recipe: init {path}: {exc.strerror or exc}") from None


def _same_path(a: Path, b: Path) -> bool:
    return os.path.normpath(os.path.abspath(a)) == os.path.normpath(os.path.abspath(b))


def _plain_folder_name(name: str) -> bool:
    """One path component of printable characters: a run can only land inside ``--out``."""
    return (
        bool(name)
        and name not in (".", "..")
        and len(name.encode("utf-8", "surrogateescape")) <= 200
        and not any(c in name for c in "/\\")
        and name.isprintable()  # (no NUL, newline or other control character)
    )


def recipe_differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    """``key: old -> new`` for every leaf that differs between two ``identity()`` dicts."""
    out: list[str] = []
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new), key=str):
            out += recipe_differences(old.get(key), new.get(key), f"{prefix}{key}.")
        return out
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        for i, (a, b) in enumerate(zip(old, new, strict=True)):
            out += recipe_differences(a, b, f"{prefix}{i}.")
        return out
    if old != new:
        out.append(f"{prefix.rstrip('.')}: {_short(old)} -> {_short(new)}")
    return out


def load_recipe(path: Path, overrides: Sequence[str] = ()) -> Recipe:
    """Read a recipe file, resolve its data paths against its folder, apply ``key=value``s."""
    yaml = _yaml()
    path = Path(path)
    try:
        with path.open("rb") as file:
            text = file.read(MAX_RECIPE_BYTES + 1)
        if len(text) > MAX_RECIPE_BYTES:
            raise VidcolorError(f"recipe {path} is over {MAX_RECIPE_BYTES >> 20} MiB: not a recipe")
        raw = _safe_load(yaml, text.decode("utf-8"))
    except OSError as exc:
        raise VidcolorError(f"cannot read recipe {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError:
        raise VidcolorError(f"recipe {path} is not UTF-8 text") from None
    except yaml.YAMLError as exc:
        raise VidcolorError(
            f"recipe {path} is not valid YAML: {' '.join(str(exc).split())}"
        ) from exc
    if not isinstance(raw, dict):
        raise VidcolorError(f"recipe {path} must be a YAML mapping")
    if isinstance(raw.get("init"), str):
        raw["init"] = _relative_to(path.parent, raw["init"])
    data, val = raw.get("data"), raw.get("val")
    for entries in (
        data.get("sources") if isinstance(data, dict) else None,
        val.get("sets") if isinstance(val, dict) else None,
    ):
        for entry in entries if isinstance(entries, list) else []:
            if isinstance(entry, dict) and isinstance(entry.get("path"), str):
                entry["path"] = _relative_to(path.parent, entry["path"])
    return recipe_from_dict(apply_overrides(raw, overrides))


def apply_overrides(raw: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """``a.b=value`` sets raw["a"]["b"]; values are parsed as YAML (``5``, ``1e-3``, ``[8, 8]``).

    A number indexes a list: ``data.sources.1.weight=2``, ``loss.0.weight=50``.
    """
    yaml = _yaml()
    for item in overrides:
        key, sep, text = item.partition("=")
        parts = key.strip().split(".")
        if not sep or not all(parts):
            raise VidcolorError(f"--set {item!r}: expected KEY=VALUE, e.g. budget.max_minutes=5")
        try:
            value = _safe_load(yaml, text)
        except yaml.YAMLError as exc:
            raise VidcolorError(f"--set {item!r}: value is not valid YAML") from exc
        node: Any = raw
        for depth, part in enumerate(parts):
            last = depth == len(parts) - 1
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    raise VidcolorError(
                        f"--set {item!r}: {'.'.join(parts[:depth])} has {len(node)} entries; "
                        f"{part!r} is not one of their indices"
                    )
                if last:
                    node[int(part)] = value
                else:
                    node = node[int(part)]
            elif isinstance(node, dict):
                if last:
                    node[part] = value
                else:
                    node = node.setdefault(part, {})
            else:
                raise VidcolorError(f"--set {item!r}: {parts[depth - 1]} is not a section")
    return raw


def recipe_from_dict(raw: dict[str, Any]) -> Recipe:
    """Build and check a ``Recipe``; unknown keys and ill-typed values are errors."""
    return Recipe(**_fields(Recipe, copy.deepcopy(raw), ""))


def _fields(cls: type, raw: object, where: str) -> dict[str, Any]:
    """Coerce a mapping into the keyword arguments of dataclass ``cls`` (nested ones too)."""
    if not isinstance(raw, dict):
        raise VidcolorError(f"recipe: {where.rstrip('.') or 'the file'} must be a mapping")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(str(k) for k in raw if k not in names)
    if unknown:
        keys = ", ".join(f"{where}{k}" for k in unknown)
        raise VidcolorError(f"recipe: unknown key(s) {keys} (known: {', '.join(sorted(names))})")
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        key = f"{where}{f.name}"
        if f.name not in raw:
            required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            if required:
                raise VidcolorError(f"recipe: missing key {key}")
            continue
        out[f.name] = _coerce(raw[f.name], hints[f.name], key)
    return out


def _coerce(value: object, kind: Any, key: str) -> Any:
    """YAML value -> the field's type; ``1e-3`` (a string to YAML 1.1) counts as a float."""
    if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
        options = typing.get_args(kind)
        if value is None and type(None) in options:
            return None
        kind = next(k for k in options if k is not type(None))
    origin = typing.get_origin(kind)
    if dataclasses.is_dataclass(kind):
        return kind(**_fields(kind, value, f"{key}."))  # type: ignore[arg-type, operator]
    if origin is list and isinstance(value, list):
        (item,) = typing.get_args(kind)
        return [_coerce(v, item, f"{key}.{i}") for i, v in enumerate(value)]
    if (origin is dict or kind is dict) and isinstance(value, dict):
        return value  # checked by the component it configures (generator, loss part, ...)
    is_bool = isinstance(value, bool)
    if kind is bool and is_bool:
        return value
    if kind is int and isinstance(value, int) and not is_bool:
        return value
    if kind is float and not is_bool:
        number = None
        if isinstance(value, int | float):
            number = float(value)
        elif isinstance(value, str):
            with contextlib.suppress(ValueError):
                number = float(value)
        if number is not None and math.isfinite(number):
            return number
        if number is not None:
            raise VidcolorError(f"recipe: {key} must be a finite number, not {value!r}")
    if kind is str and isinstance(value, str | int | float) and not is_bool:
        return str(value)
    if kind is Path and isinstance(value, str) and value:
        return Path(value).expanduser()
    if kind is Path:
        name = "a path"
    elif origin is list:
        name = "a list"
    elif origin is dict:
        name = "a mapping"
    else:
        name = getattr(kind, "__name__", str(kind))
    raise VidcolorError(f"recipe: {key} must be {name}, not {value!r}")


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _relative_to(folder: Path, value: str) -> str:
    expanded = os.path.expanduser(value)
    if os.path.isabs(expanded):
        return expanded
    return os.path.normpath(os.path.join(folder, expanded))


def _safe_load(yaml: types.ModuleType, text: str) -> Any:
    """yaml.safe_load without aliases (``*name``): a recipe needs none, and a few nested ones
    expand to billions of entries when the recipe is copied (a "billion laughs" file)."""

    class Loader(yaml.SafeLoader):  # type: ignore[name-defined, misc]
        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.AliasEvent):
                mark = self.peek_event().start_mark
                raise yaml.composer.ComposerError(
                    None, None, "aliases (*name) are not allowed in a recipe", mark
                )
            return super().compose_node(parent, index)

    return yaml.load(text, Loader=Loader)  # noqa: S506 (a SafeLoader)


def _yaml() -> types.ModuleType:
    try:
        import yaml
    except ImportError as exc:
        raise VidcolorError("training needs PyYAML: pip install 'vidcolor[train]'") from exc
    return yaml
