"""Corpus path confinement: the one rule every recipe and the manifest reader apply to audio paths."""

from __future__ import annotations

from pathlib import Path

from paraling.errors import CorpusError

__all__ = ["confine"]


def confine(root: Path, rel: str | Path, allow_outside: bool, where: str) -> Path:
    """The one confinement rule of every recipe: resolve ``rel`` against ``root``, then require it inside ``root``.

    Both are resolved first, symbolic links included, so a link that stays inside the root (or a root reached
    through a link) is accepted and a link, ``../`` or absolute path that leaves it is refused.

    Raises:
        CorpusError: When the path leaves ``root`` and ``allow_outside`` is false.
    """
    p = Path(rel)
    full = (p if p.is_absolute() else root / p).resolve()
    if not allow_outside and not full.is_relative_to(root.resolve()):
        raise CorpusError(
            f"{where}: path {str(rel)!r} points outside the corpus root {root} (to {full}); move the file under the "
            "root or set corpus.allow_outside_root=true if you trust this corpus"
        )
    return full
