"""One owner per checkpoint folder: an exclusive ``flock`` held for as long as a run trains from that folder.

Two ``paraling train`` of the same configuration resolve to the same checkpoint folder (and so to the same MLflow
run, to resume it). The first one holds the folder's lock; the second stops at once with a message naming the owner
(host, pid, start time), instead of taking over a run and checkpoints whose owner is alive. The kernel releases the
lock when the owner exits in any way (``kill -9`` included), so a crashed run is resumed by the next process.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from paraling.errors import TrainingError
from paraling.filelock import acquire

__all__ = ["LOCK_FILE", "hold_run_lock"]

LOCK_FILE = "owner.lock"


@contextlib.contextmanager
def hold_run_lock(folder: Path) -> Iterator[None]:
    """Hold ``folder``'s run lock for the duration of the block.

    Raises:
        TrainingError: Another live process holds it (the message names it and the fix).
    """
    path = folder / LOCK_FILE
    try:
        fd = acquire(path, blocking=False)
    except BlockingIOError:
        owner = _read_owner(path)
        raise TrainingError(
            f"another paraling process ({owner}) is training this configuration right now (checkpoints in "
            f"{folder}); wait for it to finish, or change the configuration (e.g. seed=..., name=...) to start a "
            "separate run"
        ) from None
    try:
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "since": time.time()}).encode())
        yield
    finally:
        os.close(fd)  # releases the lock


def _read_owner(path: Path) -> str:
    try:
        info = json.loads(path.read_bytes()[:4096] or b"{}")
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(info["since"])))
        return f"pid {info['pid']} on {info['host']}, since {since}"
    except (OSError, ValueError, KeyError, TypeError):
        return "owner unknown"
