"""The interrupt handlers, and keeping them when a library puts in its own (Ray does)."""

from __future__ import annotations

import signal

import pytest

from vidcolor import signals


def test_ignored_signal_stays_ignored(saved_handlers: None) -> None:
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # as under nohup
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signals.install_interrupt_handlers()
    assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    assert signals.handlers_installed()


def test_first_signal_raises_once(saved_handlers: None) -> None:
    signals.install_interrupt_handlers()
    with pytest.raises(signals.Interrupted) as caught:
        signal.raise_signal(signal.SIGTERM)
    assert caught.value.exit_status == 128 + signal.SIGTERM
    assert signals.received() == signal.SIGTERM
    signal.raise_signal(signal.SIGINT)  # already stopping: noted, not raised again


def test_kept_through_puts_ours_back(saved_handlers: None) -> None:
    signals.install_interrupt_handlers()
    with signals.kept_through():
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # what a library's init does
        assert signal.getsignal(signal.SIGTERM) is not signal.getsignal(signal.SIGHUP)
    assert all(
        signal.getsignal(signum) is signal.getsignal(signal.SIGINT) for signum in signals.HANDLED
    )
    with pytest.raises(signals.Interrupted):
        signal.raise_signal(signal.SIGTERM)


def test_kept_through_even_when_the_library_fails(saved_handlers: None) -> None:
    signals.install_interrupt_handlers()
    with pytest.raises(RuntimeError), signals.kept_through():
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        raise RuntimeError("library failed")
    assert signals.handlers_installed()
    assert signal.getsignal(signal.SIGTERM) is signal.getsignal(signal.SIGINT)


def test_kept_through_leaves_others_alone(saved_handlers: None) -> None:
    for signum in signals.HANDLED:
        signal.signal(signum, signal.SIG_DFL)
    with signals.kept_through():
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN  # not ours to put back
    assert not signals.handlers_installed()
