"""The one border order of paraling's ops: ``Border(top, bottom, left, right)``.

A border is the zero padding around a feature map: the "same" padding of a convolution, or the next convolution's
padding that a native kernel writes around its output in the same pass. Only :meth:`Border.pad_args` turns it into
``torch.nn.functional.pad``'s ``(left, right, top, bottom)``.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["NO_BORDER", "Border", "same_padding"]


class Border(NamedTuple):
    """Zero rows above and below, zero columns left and right of a map."""

    top: int = 0
    bottom: int = 0
    left: int = 0
    right: int = 0

    def pad_args(self) -> tuple[int, int, int, int]:
        """``(left, right, top, bottom)``, the order of ``torch.nn.functional.pad``."""
        return self.left, self.right, self.top, self.bottom

    def __bool__(self) -> bool:
        return any(self)


NO_BORDER = Border()


def same_padding(kernel: int) -> Border:
    """The padding that keeps a map's size under a square ``kernel`` (an even kernel pads one more bottom/right)."""
    before, after = (kernel - 1) // 2, kernel // 2
    return Border(before, after, before, after)
