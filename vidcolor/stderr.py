"""File descriptor 2 into a log for a while, for C++ libraries that write to it directly."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

RAY_TEARDOWN_LOG = "ray-teardown.log"


@contextlib.contextmanager
def stderr_into(path: Path) -> Iterator[None]:
    """Ray's core worker logs errors of its own teardown (a task that cannot report its end to
    a driver already leaving) straight to fd 2, after a command's one line; they belong in a
    log. Where the log cannot be opened, nothing changes."""
    sys.stderr.flush()
    try:
        log = open(path, "ab")  # noqa: SIM115 (closed below, after fd 2 is back)
    except OSError:
        yield
        return
    saved = os.dup(2)
    try:
        os.dup2(log.fileno(), 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        log.close()


def shutdown_ray_quietly(ray: object, log: Path) -> None:
    """``ray.shutdown()`` with what Ray's C++ prints meanwhile appended to ``log``."""
    with stderr_into(log):
        ray.shutdown()  # type: ignore[attr-defined]
