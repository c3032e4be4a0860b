"""Keep freed activation memory in the process instead of returning it to the kernel after every step.

A CPU training step allocates and frees the same few tens of megabytes of activations and gradients (the first
convolution's output alone is 29 MB at batch 512). glibc serves blocks that large with ``mmap`` and returns them with
``munmap`` on ``free``, so every step faults the same pages in again: 3,000-11,000 minor page faults per step of the
default CNN, each one a kernel entry plus zeroing a 4 KiB page. Fixing glibc's mmap threshold at 32 MiB and its trim
threshold at 128 MiB makes blocks up to 32 MiB come from the heap and stay there for the next step (almost no faults
per step after the first), while bigger blocks (e.g. a 2,048-window inference batch) are still mapped and unmapped,
so a long run does not keep them or fragment the heap around them.
"""

from __future__ import annotations

import ctypes
import logging
import sys

__all__ = ["keep_freed_memory"]

log = logging.getLogger(__name__)

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_done = False


def keep_freed_memory(threshold_bytes: int = 32 << 20) -> bool:
    """Ask glibc to serve blocks below ``threshold_bytes`` from the heap and keep freed heap memory (once per process).

    Returns:
        Whether the setting is in effect (false off Linux/glibc, e.g. macOS or musl).
    """
    global _done
    if _done:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    for value in (threshold_bytes, 32 << 20):  # glibc may cap the mmap threshold at 32 MiB
        if mallopt(_M_MMAP_THRESHOLD, value) == 1:
            mallopt(_M_TRIM_THRESHOLD, 4 * value)
            _done = True
            log.debug("glibc malloc: mmap threshold %d bytes", value)
            return True
    return False
