"""Generator weights as safetensors: tensors plus the config that rebuilds the network.

``--model`` takes any file a user points at, so every way such a file can be wrong (not
safetensors, truncated, a config that is not JSON or names an unknown network, tensors of another
network) ends as one ``VidcolorError`` line, never a traceback.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from vidcolor.atomic import atomic_output
from vidcolor.errors import VidcolorError
from vidcolor.models.base import Generator
from vidcolor.models.config import ArchConfig, ConfigError
from vidcolor.models.registry import build_generator, parse_config


def save_generator(
    model: Generator,
    path: Path,
    info: dict[str, str] | None = None,
    overwrite: bool = True,
) -> None:
    """Write atomically: a crash mid-save never leaves a truncated weights file behind.

    Replaces an existing file by default: training rewrites its checkpoint at every evaluation.
    """
    path = Path(path)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    metadata = {"config": json.dumps(model.config_dict())}
    metadata.update(info or {})
    with atomic_output(path, overwrite=overwrite) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


def read_metadata(path: Path) -> dict[str, str]:
    return _read_header(path)[0]


def read_tensor_names(path: Path) -> set[str]:
    """The state-dict keys a weights file holds (the learned layers an export names after)."""
    return _read_header(path)[1]


def _read_header(path: Path) -> tuple[dict[str, str], set[str]]:
    with _reading(path), safe_open(str(path), framework="pt") as handle:
        return dict(handle.metadata() or {}), set(handle.keys())


@contextlib.contextmanager
def _reading(path: Path) -> Iterator[None]:
    """Every way a weights file fails to read, as one line (a folder says so, not 'os error 19')."""
    if Path(path).is_dir():
        raise VidcolorError(f"cannot read model weights {path}: it is a folder, not a file")
    try:
        yield
    except (OSError, SafetensorError) as exc:
        raise VidcolorError(f"cannot read model weights {path}: {_one_line(exc)}") from exc


def read_config(path: Path) -> ArchConfig:
    """The network a weights file was saved from (the default one when the file names none).

    Keys the file lacks take today's defaults: files saved before a key existed still load.
    """
    text = read_metadata(path).get("config")
    try:
        data = {} if text is None else json.loads(text)
    except ValueError as exc:
        raise VidcolorError(f"model weights {path}: config is not valid JSON ({exc})") from exc
    try:
        return parse_config(data)
    except ConfigError as exc:
        raise VidcolorError(f"model weights {path}: {_one_line(exc)}") from exc


def load_generator(path: Path) -> Generator:
    """Any registered generator from its weights file, in eval mode.

    The file's tensors are checked against a shape-only (meta) build first, so a config that
    names a huge network allocates nothing before it is found not to fit.
    """
    config = read_config(path)
    with _reading(path):
        tensors = load_file(str(path))
    with torch.device("meta"):
        shapes = build_generator(config).state_dict()
    problem = _mismatch(shapes, tensors)
    if problem:
        raise VidcolorError(f"model weights {path} do not fit {config.arch}: {problem}")
    _refuse_damaged(path, tensors)
    model = build_generator(config)
    try:
        model.load_state_dict(tensors)
    except RuntimeError as exc:  # e.g. a tensor whose values cannot be copied in
        message = f"model weights {path} do not fit {config.arch}: {_one_line(exc)}"
        raise VidcolorError(message) from exc
    return model.eval()


MIN_FITTING_SHARE = 0.5  # of a network's float weights, by count, for a file to start it from


def fitting_tensors(model: torch.nn.Module, path: Path) -> tuple[list[str], list[str]]:
    """The names of ``model``'s tensors that a weights file holds with the same shape and kind,
    and the names it leaves as they are, read from the file's header alone. A file that fits
    under half the network's weights is another network: an error, not a silent partial start."""
    own = model.state_dict()
    with _reading(path), safe_open(str(path), framework="pt") as handle:
        found = {
            k: (tuple(handle.get_slice(k).get_shape()), handle.get_slice(k).get_dtype())
            for k in handle.keys()  # noqa: SIM118 (a safetensors handle does not iterate)
        }
    fits = sorted(
        k
        for k, (shape, dtype) in found.items()
        if k in own
        and tuple(own[k].shape) == shape
        and own[k].is_floating_point() == dtype.startswith(("F", "BF"))
    )
    learned = {k: t.numel() for k, t in own.items() if t.is_floating_point()}
    share = sum(learned.get(k, 0) for k in fits) / max(1, sum(learned.values()))
    if share < MIN_FITTING_SHARE:
        raise VidcolorError(
            f"model weights {path} fit {share:.0%} of this network's weights (another "
            f"architecture?); starting from them needs at least {MIN_FITTING_SHARE:.0%}"
        )
    return fits, sorted(set(own) - set(fits))


def load_fitting(model: torch.nn.Module, path: Path) -> tuple[list[str], list[str]]:
    """Copy into ``model`` the tensors of a weights file that fit it (``fitting_tensors``): a
    trained model to fine-tune, or the encoder and decoder under a new head. Returns the
    names loaded and the names left as they were."""
    fits, kept = fitting_tensors(model, path)
    with _reading(path), safe_open(str(path), framework="pt") as handle:
        tensors = {k: handle.get_tensor(k) for k in fits}
    _refuse_damaged(path, tensors)
    own = model.state_dict()
    with torch.no_grad():
        for name, tensor in tensors.items():
            own[name].copy_(tensor)
    return fits, kept


def _refuse_damaged(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    """NaN or infinite weights would turn every picture white or black, silently."""
    broken = sorted(
        k for k, t in tensors.items() if t.is_floating_point() and not t.isfinite().all()
    )
    if broken:
        raise VidcolorError(
            f"model weights {path} are damaged: {len(broken)} tensor(s) hold NaN or infinite "
            f"values (e.g. {broken[0]})"
        )


def _mismatch(expected: dict[str, torch.Tensor], found: dict[str, torch.Tensor]) -> str:
    """A one-line summary of missing, unexpected and wrongly shaped tensors ('' when they fit)."""

    def shape(t: torch.Tensor) -> str:
        return "x".join(map(str, t.shape)) or "scalar"

    parts = []
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    wrong = sorted(k for k in set(expected) & set(found) if found[k].shape != expected[k].shape)
    if missing:
        parts.append(f"{len(missing)} tensor(s) missing (e.g. {missing[0]})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
    if wrong:
        k = wrong[0]
        parts.append(
            f"{len(wrong)} of the wrong shape (e.g. {k}: {shape(found[k])}, "
            f"expected {shape(expected[k])})"
        )
    # Any float precision loads (fp16 weights are upcast); integers where the network holds
    # floats (or the reverse) would be copied in as numbers that mean something else.
    kind = sorted(
        k
        for k in set(expected) & set(found)
        if found[k].is_floating_point() != expected[k].is_floating_point()
    )
    if kind:
        k = kind[0]
        parts.append(
            f"{len(kind)} of the wrong type (e.g. {k}: {str(found[k].dtype)[6:]}, expected "
            f"{'a float type' if expected[k].is_floating_point() else 'an integer type'})"
        )
    return "; ".join(parts)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())
