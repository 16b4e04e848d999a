"""One writer per folder: a second run into the same place is refused at once, not merged.

An advisory ``flock`` on a small file: the kernel drops it when the holder exits, however it
ends (SIGKILL included), so a stale lock never blocks the next run.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from vidcolor.errors import VidcolorError


@contextlib.contextmanager
def exclusive(lock_file: Path, busy: str) -> Iterator[None]:
    """Hold ``lock_file`` for the block; ``busy`` is the one line when another process has it
    (``{pid}`` in it is replaced by the holder's process id)."""
    try:
        fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise VidcolorError(f"cannot create {lock_file}: {exc.strerror or exc}") from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "?"
            raise VidcolorError(busy.replace("{pid}", holder)) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)
