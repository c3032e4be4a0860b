"""Progress bars on a terminal, silence under CI or when output is not a TTY."""

from __future__ import annotations

import os
import sys
from typing import Any

__all__ = ["Progress"]


class _NoBar:
    def update(self, n: int = 1, **postfix: Any) -> None:
        """Ignore progress."""

    def close(self) -> None:
        """Nothing to close."""


class _Bar:
    def __init__(self, total: int, desc: str) -> None:
        from tqdm.auto import tqdm

        self._bar = tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True, file=sys.stderr)

    def update(self, n: int = 1, **postfix: Any) -> None:
        if postfix:
            self._bar.set_postfix(
                {k: f"{v:.3f}" if isinstance(v, float) else v for k, v in postfix.items()}, refresh=False
            )
        self._bar.update(n)

    def close(self) -> None:
        self._bar.close()


class Progress:
    """Factory of progress bars.

    Args:
        mode: ``auto`` (bars only on an interactive terminal and not under ``CI``), ``always`` or ``never``.
    """

    def __init__(self, mode: str = "auto") -> None:
        if mode == "auto":
            self.enabled = sys.stderr.isatty() and not os.environ.get("CI")
        else:
            self.enabled = mode == "always"

    def bar(self, total: int, desc: str) -> _Bar | _NoBar:
        """A bar of ``total`` steps (a no-op object when disabled)."""
        return _Bar(total, desc) if self.enabled else _NoBar()
