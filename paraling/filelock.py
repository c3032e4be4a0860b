"""Exclusive ``flock`` locks on files: the one implementation behind paraling's study, store, build and run locks.

A ``flock`` is released by the kernel when its process exits, however it exits, so a killed process never leaves a
lock behind. The lock file is created (mode 0644, parent folders included) and never removed: removing it while
another process waits on it would let a third process lock a new file of the same name.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

__all__ = ["acquire", "file_lock", "is_free"]


def acquire(path: str | Path, *, blocking: bool = True) -> int:
    """Lock ``path`` exclusively; returns the open descriptor, which holds the lock until it is closed.

    Raises:
        BlockingIOError: ``blocking`` is false and another process holds the lock.
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(p, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
    except BaseException:
        os.close(fd)
        raise
    return fd


@contextlib.contextmanager
def file_lock(path: str | Path, *, blocking: bool = True) -> Iterator[int]:
    """Hold an exclusive lock on ``path`` for the block (see :func:`acquire`); yields the descriptor."""
    fd = acquire(path, blocking=blocking)
    try:
        yield fd
    finally:
        os.close(fd)  # releases the lock


def is_free(path: str | Path) -> bool:
    """Whether no process holds ``path``'s lock right now (``False`` where the file cannot be opened).

    Raises:
        FileNotFoundError: ``path`` does not exist.
    """
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    return True
