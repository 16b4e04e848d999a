"""Typed configs read from recipes and weights files, checked before anything is built.

A generator's config comes from a user's YAML recipe or from the metadata of a ``--model`` file,
so a typo or a foreign file must fail at once with one line, never build the wrong network
silently. Loss parts use the same checks (``train/losses.py``).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from vidcolor.errors import VidcolorError


class ConfigError(VidcolorError, ValueError):
    """A config that cannot build what it names.

    A ``VidcolorError`` (the CLI prints it as one line) and a ``ValueError`` (what callers of
    the first, single-architecture ``GeneratorConfig`` catch).
    """


T = TypeVar("T", bound="ArchConfig")


def is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def positive_int(value: object) -> bool:
    return is_int(value) and value > 0  # type: ignore[operator]


def _type_name(kind: object) -> str:
    if kind is int:
        return "an integer"
    if kind is float:
        return "a number"
    if kind is bool:
        return "true or false"
    if kind is str:
        return "a string"
    if typing.get_origin(kind) is tuple:
        return "a list of integers"
    return getattr(kind, "__name__", str(kind))


def coerce(value: object, kind: object, name: str, means: str | None = None) -> object:
    """JSON/YAML value -> the field's declared type; a wrong type is a ``ConfigError``.

    Integers count as floats (``weight: 100``), and so does text that reads as a number
    (``1e-3``, which YAML 1.1 leaves as text); a list becomes a tuple (JSON has no tuples).
    ``means`` words the error (``a positive integer``) where the type alone says too little.
    """
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        options = typing.get_args(kind)
        if value is None and type(None) in options:
            return None
        kind = next(k for k in options if k is not type(None))
    if kind is bool and isinstance(value, bool):
        return value
    if kind is int and is_int(value):
        return value
    if kind is float and (is_int(value) or isinstance(value, float)):
        return float(value)  # type: ignore[arg-type]
    if kind is float and isinstance(value, str):
        try:  # YAML 1.1 (PyYAML) reads 1e-3 as text; recipes mean a number
            return float(value)
        except ValueError:
            pass
    if kind is str and isinstance(value, str):
        return value
    if typing.get_origin(kind) is tuple and isinstance(value, list | tuple):
        (item,) = {k for k in typing.get_args(kind) if k is not Ellipsis}
        if all(is_int(v) or item is not int for v in value):
            return tuple(coerce(v, item, name) for v in value)
    raise ConfigError(f"{name} must be {means or _type_name(kind)}, not {value!r}")


def fields_from_mapping(cls: type, data: object, where: str) -> dict[str, Any]:
    """Keyword arguments of dataclass ``cls`` from a mapping: unknown keys and bad types fail."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where} must be a mapping, not {type(data).__name__}")
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    unknown = sorted(str(k) for k in data if k not in names)
    if unknown:
        raise ConfigError(
            f"unknown {where} key(s) {', '.join(unknown)} (known: {', '.join(names)})"
        )
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    return {
        str(k): coerce(v, hints[str(k)], str(k), fields[str(k)].metadata.get("means"))
        for k, v in data.items()
    }


@dataclass(frozen=True)
class ArchConfig:
    """Base of every architecture's config: ``arch`` plus that network's own fields.

    Subclasses set ``ARCH`` and give ``arch`` that default; ``check`` adds range checks.
    Values are type-checked when the config is made, not only when read from a mapping, so
    ``UNetConfig(channels="abc")`` fails as clearly as a bad recipe.
    """

    ARCH: ClassVar[str] = ""
    arch: str = ""

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "arch":
                continue
            means = f.metadata.get("means")
            object.__setattr__(self, f.name, coerce(value, hints[f.name], f.name, means))
        if self.arch != self.ARCH:
            from vidcolor.models.registry import unknown_architecture

            raise unknown_architecture(self.arch, for_config=self.ARCH)
        self.check()

    def check(self) -> None:
        """Range checks of the subclass; raise ``ConfigError`` with the key's name."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-able values (tuples as lists): what weights files record."""
        return {
            f.name: list(v) if isinstance(v, tuple) else v
            for f in dataclasses.fields(self)
            for v in [getattr(self, f.name)]
        }

    @classmethod
    def from_dict(cls: type[T], data: object) -> T:
        """Inverse of ``to_dict``; missing keys take their defaults (older files lack new keys)."""
        if isinstance(data, Mapping) and "arch" in data:
            arch = data["arch"]  # any value: a wrong one is an unknown architecture
            data = {k: v for k, v in data.items() if k != "arch"}
        else:
            arch = cls.ARCH
        return cls(arch=arch, **fields_from_mapping(cls, data, "generator config"))


def require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def require_ints(name: str, value: tuple[int, ...], lengths: range, minimum: int = 1) -> None:
    """``value`` is a tuple of ``len in lengths`` integers, each at least ``minimum``."""
    shown = list(value) if isinstance(value, tuple) else value
    if lengths.start == lengths.stop - 1:
        count = f"{lengths.start}"
    else:
        count = f"{lengths.start} to {lengths.stop - 1}"
    kind = "positive integers" if minimum == 1 else f"integers >= {minimum}"
    require(
        isinstance(value, tuple)
        and len(value) in lengths
        and all(is_int(v) and v >= minimum for v in value),
        f"{name} must be {count} {kind}, not {shown!r}",
    )
