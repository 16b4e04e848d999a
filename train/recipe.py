"""Training recipes: a YAML file, optional ``--set key=value`` overrides, checked up front.

Data paths in the file are relative to the file itself (a recipe means the same wherever it is
run from); paths given with ``--set`` are relative to the current directory, like any other
command-line path. Every key is checked against the dataclasses below before any data is
loaded, so a typo (``budget.max_minuts``) fails at once with one line, not after an hour.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from vidcolor.errors import VidcolorError
from vidcolor.models.generator import SIZE_MULTIPLE, GeneratorConfig

LOSSES = ("l1", "rebalanced-l1")


@dataclass(frozen=True)
class DataSpec:
    train: Path  # folder of .tar shards
    val: Path  # folder of photos (or of shards) for periodic validation
    short_side: int = 192  # images are kept in memory at this size
    crop: int = 160  # random-scale square crops, resized to this


@dataclass(frozen=True)
class OptimSpec:
    batch_size: int
    lr: float  # decoder
    encoder_lr: float
    weight_decay: float
    warmup_steps: int


@dataclass(frozen=True)
class LossSpec:
    kind: str
    mix: float = 0.5  # rebalanced-l1 only
    power: float = 0.3  # rebalanced-l1 only


@dataclass(frozen=True)
class BudgetSpec:
    """Training stops at whichever of the two ends first; the cosine schedule spans it."""

    max_minutes: float
    max_steps: int


@dataclass(frozen=True)
class EvalSpec:
    every_steps: int
    images: int
    size: int  # render size, as ``vidcolor --render-size``


@dataclass(frozen=True)
class Recipe:
    name: str
    data: DataSpec
    optim: OptimSpec
    loss: LossSpec
    budget: BudgetSpec
    eval: EvalSpec
    seed: int = 0
    threads: int | None = None  # torch threads; None: torch's default
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)

    def __post_init__(self) -> None:
        checks = {
            "data.short_side": self.data.short_side >= 1,
            "data.crop": self.data.crop >= SIZE_MULTIPLE and self.data.crop % SIZE_MULTIPLE == 0,
            "optim.batch_size": self.optim.batch_size >= 1,
            "optim.warmup_steps": self.optim.warmup_steps >= 1,
            "budget.max_minutes": self.budget.max_minutes > 0,
            "budget.max_steps": self.budget.max_steps >= 1,
            "eval.every_steps": self.eval.every_steps >= 1,
            "eval.images": self.eval.images >= 1,
            "eval.size": self.eval.size >= SIZE_MULTIPLE,
            "threads": self.threads is None or self.threads >= 1,
        }
        wrong = [key for key, ok in checks.items() if not ok]
        if wrong:
            raise VidcolorError(
                f"recipe: out of range: {', '.join(wrong)} (sizes: multiples of "
                f"{SIZE_MULTIPLE}; counts and budgets: positive)"
            )
        if self.loss.kind not in LOSSES:
            raise VidcolorError(f"recipe: unknown loss.kind {self.loss.kind!r}; use {LOSSES}")

    def to_dict(self) -> dict[str, object]:
        """Plain JSON-able values, recorded in the weights' metadata."""
        out = asdict(self)
        out["data"] = {k: str(v) if isinstance(v, Path) else v for k, v in out["data"].items()}
        out["generator"] = self.generator.to_dict()
        return out


def load_recipe(path: Path, overrides: Sequence[str] = ()) -> Recipe:
    """Read a recipe file, resolve its data paths against its folder, apply ``key=value``s."""
    yaml = _yaml()
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise VidcolorError(f"cannot read recipe {path}: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise VidcolorError(
            f"recipe {path} is not valid YAML: {' '.join(str(exc).split())}"
        ) from exc
    if not isinstance(raw, dict):
        raise VidcolorError(f"recipe {path} must be a YAML mapping")
    data = raw.get("data")
    if isinstance(data, dict):
        for key in ("train", "val"):
            if isinstance(data.get(key), str):
                data[key] = _relative_to(path.parent, data[key])
    return recipe_from_dict(apply_overrides(raw, overrides))


def apply_overrides(raw: dict[str, object], overrides: Sequence[str]) -> dict[str, object]:
    """``a.b=value`` sets raw["a"]["b"]; values are parsed as YAML (``5``, ``1e-3``, ``[8, 8]``)."""
    yaml = _yaml()
    for item in overrides:
        key, sep, text = item.partition("=")
        parts = key.strip().split(".")
        if not sep or not all(parts):
            raise VidcolorError(f"--set {item!r}: expected KEY=VALUE, e.g. budget.max_minutes=5")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise VidcolorError(f"--set {item!r}: value is not valid YAML") from exc
        node = raw
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise VidcolorError(f"--set {item!r}: {part} is not a section")
            node = child
        node[parts[-1]] = value
    return raw


def recipe_from_dict(raw: dict[str, object]) -> Recipe:
    """Build and check a ``Recipe``; unknown keys and ill-typed values are errors."""
    values = _fields(Recipe, raw, "")
    generator = raw.get("generator", {})
    try:
        values["generator"] = GeneratorConfig.from_dict(generator)
    except (TypeError, ValueError) as exc:
        raise VidcolorError(f"recipe: generator: {exc}") from exc
    return Recipe(**values)


def _fields(cls: type, raw: object, where: str) -> dict[str, object]:
    """Coerce a mapping into the keyword arguments of dataclass ``cls`` (nested ones too)."""
    if not isinstance(raw, dict):
        raise VidcolorError(f"recipe: {where or 'the file'} must be a mapping")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(str(k) for k in raw if k not in names)
    if unknown:
        keys = ", ".join(f"{where}{k}" for k in unknown)
        raise VidcolorError(f"recipe: unknown key(s) {keys} (known: {', '.join(sorted(names))})")
    out: dict[str, object] = {}
    for f in dataclasses.fields(cls):
        key = f"{where}{f.name}"
        if f.name == "generator":
            continue  # checked by GeneratorConfig itself
        if f.name not in raw:
            required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            if required:
                raise VidcolorError(f"recipe: missing key {key}")
            continue
        kind = hints[f.name]
        if dataclasses.is_dataclass(kind):
            out[f.name] = kind(**_fields(kind, raw[f.name], f"{key}."))  # type: ignore[operator]
        else:
            out[f.name] = _coerce(raw[f.name], kind, key)
    return out


def _coerce(value: object, kind: object, key: str) -> object:
    """YAML scalar -> the field's type; ``1e-3`` (a string to YAML 1.1) counts as a float."""
    if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
        options = typing.get_args(kind)
        if value is None and type(None) in options:
            return None
        kind = next(k for k in options if k is not type(None))
    is_bool = isinstance(value, bool)
    if kind is int and isinstance(value, int) and not is_bool:
        return value
    if kind is float and not is_bool:
        if isinstance(value, int | float):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    if kind is str and isinstance(value, str | int | float) and not is_bool:
        return str(value)
    if kind is Path and isinstance(value, str) and value:
        return Path(value).expanduser()
    name = getattr(kind, "__name__", str(kind))
    raise VidcolorError(
        f"recipe: {key} must be {'a path' if kind is Path else name}, not {value!r}"
    )


def _relative_to(folder: Path, value: str) -> str:
    expanded = os.path.expanduser(value)
    if os.path.isabs(expanded):
        return expanded
    return os.path.normpath(os.path.join(folder, expanded))


def _yaml() -> types.ModuleType:
    try:
        import yaml
    except ImportError as exc:
        raise VidcolorError("training needs PyYAML: pip install 'vidcolor[train]'") from exc
    return yaml
