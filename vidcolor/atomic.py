"""Atomic outputs: write under a hidden temporary name in the target folder, rename when done.

A crash, a kill or a bad input never leaves a partial file, and never touches an existing one.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from vidcolor.errors import VidcolorError


def check_writable_target(path: Path, overwrite: bool) -> None:
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise VidcolorError(f"{path}: output folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise VidcolorError(f"{path}: output folder {folder} is not writable")
    if path.exists() and not overwrite:
        raise VidcolorError(f"{path}: already exists (use --overwrite to replace it)")
    if path.is_dir():
        raise VidcolorError(f"{path}: is a folder, not a file")


@contextmanager
def atomic_output(path: Path) -> Iterator[Path]:
    """Yield a temporary path with the same extension; rename it onto ``path`` on success."""
    folder = path.parent if str(path.parent) else Path(".")
    try:
        fd, tmp_name = tempfile.mkstemp(
            prefix=f".{path.stem}.", suffix=f".part{path.suffix}", dir=folder
        )
    except OSError as exc:
        raise VidcolorError(f"{path}: cannot write in {folder} ({exc.strerror})") from exc
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
