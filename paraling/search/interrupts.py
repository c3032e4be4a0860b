"""Ctrl-C and SIGTERM for sweep processes: raised once as ``KeyboardInterrupt``, and remembered.

A ``KeyboardInterrupt`` raised from a signal handler can land anywhere, also inside a library's clean-up, where a
second exception may replace it (SQLAlchemy: "This transaction is closed"). :func:`interrupt_requested` still says
that an interrupt arrived, so the running trial is recorded as interrupted (and queued again), not as failed.
"""

from __future__ import annotations

import signal
from typing import Any

__all__ = ["interrupt_once", "interrupt_requested", "remember_interrupt", "reset_interrupt"]

_requested = False


def interrupt_once(signum: int, frame: Any) -> None:
    """Signal handler: ignore further SIGINT/SIGTERM, remember the interrupt, raise ``KeyboardInterrupt``."""
    global _requested
    _requested = True
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise KeyboardInterrupt


def remember_interrupt(signum: int, frame: Any) -> None:
    """SIGINT handler of the coordinating process: remember the interrupt and raise ``KeyboardInterrupt`` (again on
    every press, so a second Ctrl-C still stops a slow clean-up)."""
    global _requested
    _requested = True
    raise KeyboardInterrupt


def reset_interrupt() -> None:
    """Forget an earlier interrupt (a new sweep starts in this process)."""
    global _requested
    _requested = False


def interrupt_requested() -> bool:
    """Whether :func:`interrupt_once` ran in this process."""
    return _requested
