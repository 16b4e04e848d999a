"""Training checkpoints: everything a run needs to continue as if it had never stopped.

A checkpoint holds the generator, the discriminator, their optimisers and LR schedulers, the AMP
scaler, the step, the running loss sums, the minutes spent, every RNG state (torch CPU and
CUDA, NumPy's and Python's global generators) and the recipe. The data stream needs no state of
its own: its order and augmentation are pure functions of (seed, position) (``data.py``).

Files are ``OUT/<name>/checkpoints/step-NNNNNNNN.pt``, written under a temporary name, flushed
to disk and renamed (a kill at any moment leaves the previous checkpoint intact); the newest
``keep`` are kept. They load with ``torch.load(weights_only=True)``: plain tensors, numbers
and strings, no pickled code. Checkpoints are for resuming; shipped models are the weights
``save_generator`` writes.
"""

from __future__ import annotations

import logging
import os
import random
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vidcolor.atomic import atomic_output
from vidcolor.errors import VidcolorError, one_line

FORMAT = 1
_NAME = re.compile(r"^step-(\d{8,})\.pt$")
log = logging.getLogger(__name__)


def rng_state() -> dict[str, Any]:
    """Every global RNG, as plain values (NumPy's key as a list, CUDA's per device)."""
    np_state = np.random.get_state(legacy=False)
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else []
    return {
        "torch": torch.get_rng_state(),
        "cuda": cuda,
        "numpy": {
            "key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "python": random.getstate(),
    }


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"][: torch.cuda.device_count()])
    numpy = state["numpy"]
    np.random.set_state(
        {
            "bit_generator": "MT19937",
            "state": {"key": numpy["key"].numpy().astype(np.uint32), "pos": numpy["pos"]},
            "has_gauss": numpy["has_gauss"],
            "gauss": numpy["gauss"],
        }
    )
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


def checkpoint_path(folder: Path, step: int) -> Path:
    return Path(folder) / f"step-{step:08d}.pt"


def list_checkpoints(folder: Path) -> list[tuple[int, Path]]:
    """(step, path) of the finished checkpoints in ``folder``, oldest first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = []
    for path in folder.iterdir():
        match = _NAME.match(path.name)
        if match:
            found.append((int(match.group(1)), path))
    return sorted(found)


def save_checkpoint(folder: Path, step: int, state: dict[str, Any], keep: int = 2) -> Path:
    """Write ``state`` as the checkpoint of ``step`` (atomically), then drop all but ``keep``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = checkpoint_path(folder, step)
    with atomic_output(path, overwrite=True) as tmp, open(tmp, "wb") as handle:
        torch.save({"format": FORMAT, **state}, handle)
        handle.flush()
        os.fsync(handle.fileno())  # on disk before the rename makes it the latest
    for _, old in list_checkpoints(folder)[:-keep]:
        old.unlink(missing_ok=True)
    return path


def load_checkpoint(path: Path) -> dict[str, Any]:
    _check_crc(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds for a damaged file
        raise VidcolorError(f"{path}: not a readable checkpoint ({one_line(str(exc))})") from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise VidcolorError(f"{path}: not a vidcolor training checkpoint (format {FORMAT})")
    return state


def _check_crc(path: Path) -> None:
    """torch.save writes a zip with a CRC-32 per tensor, which torch.load does not check: a
    flipped byte would resume into NaN weights. zipfile checks them (60 ms for 40 MB)."""
    try:
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
    except (OSError, zipfile.BadZipFile, EOFError, ValueError) as exc:
        raise VidcolorError(f"{path}: not a readable checkpoint ({one_line(str(exc))})") from exc
    if damaged is not None:
        raise VidcolorError(f"{path}: damaged checkpoint (bad checksum in {one_line(damaged)})")


def load_latest(folder: Path) -> tuple[Path, dict[str, Any]]:
    """The newest checkpoint that loads; a damaged newest one falls back to the one before."""
    found = list_checkpoints(folder)
    if not found:
        raise VidcolorError(f"nothing to resume: no checkpoint in {one_line(str(folder))}")
    problem: VidcolorError | None = None
    for left, (_, path) in reversed(list(enumerate(found))):
        try:
            state = load_checkpoint(path)
        except VidcolorError as exc:
            if left:
                log.warning("%s; trying the checkpoint before it", exc)
            problem = problem or exc
            continue
        return path, state
    assert problem is not None
    raise problem
