"""Signals end a run cleanly: SIGINT, SIGTERM and SIGHUP raise ``Interrupted`` once.

Raised in the main thread, the exception unwinds through the pipeline's teardown, which stops
the stage threads and removes temporary outputs. Further signals during that cleanup are
noted but ignored, so a second Ctrl-C cannot abort the process half-way (and leave a thread
inside a closed container, or a ``.part`` file behind).
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from types import FrameType

HANDLED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Interrupted(BaseException):
    """A signal asked the run to stop; ``exit_status`` is the shell's 128 + N."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_status(self) -> int:
        return 128 + self.signum

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name


def install_interrupt_handlers() -> None:
    """Call from the main thread before any work starts (model loading included).

    A signal ignored when we start stays ignored: ``nohup`` ignores SIGHUP, and a shell runs
    background jobs of a script with SIGINT ignored.
    """
    for signum in HANDLED:
        if signal.getsignal(signum) is not signal.SIG_IGN:
            signal.signal(signum, _first_signal)


_received: int | None = None


def handlers_installed() -> bool:
    """Whether ``install_interrupt_handlers`` is in force, so that code which lets a library
    put in handlers of its own (Ray does) knows to put ours back. Any one signal tells: a
    background job starts with SIGINT ignored, and ``nohup`` with SIGHUP ignored."""
    return any(signal.getsignal(signum) is _first_signal for signum in HANDLED)


@contextlib.contextmanager
def kept_through() -> Iterator[None]:
    """Wrap calls into a library that puts in signal handlers of its own (Ray does, in
    ``ray.init`` and when its workers start): ours go back in after them, if they were in
    force before, so a signal still ends the run with one line and status 128 + N."""
    ours = handlers_installed()
    try:
        yield
    finally:
        if ours:
            install_interrupt_handlers()


def received() -> int | None:
    """The signal that asked the run to stop, if one has: a library that turned our
    ``Interrupted`` into its own error (pybind11 makes it an ImportError) can be told apart
    from a real failure."""
    return _received


def _first_signal(signum: int, frame: FrameType | None) -> None:
    global _received
    _received = signum
    for other in HANDLED:
        if signal.getsignal(other) is not signal.SIG_IGN:
            signal.signal(other, _later_signal)
    raise Interrupted(signum)


def _later_signal(signum: int, frame: FrameType | None) -> None:
    """Already stopping: let the cleanup finish."""
