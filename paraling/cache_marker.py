"""What makes a folder a paraling cache: a ``CACHEDIR.TAG`` that paraling wrote, or (caches written before the tag)
nothing but paraling's own sections in paraling's own layout.

The tag follows the Cache Directory Tagging Specification (https://bford.info/cachedir/), so backup tools skip the
cache too. ``paraling cache clean`` deletes only inside a folder that passes :func:`is_paraling_cache`: pointed at a
project folder by mistake (``--cache-dir .``) it refuses instead of deleting the user's own ``checkpoints/``.
"""

from __future__ import annotations

import re
from pathlib import Path

from paraling.atomic import atomic_path

__all__ = ["SECTIONS", "TAG_FILE", "is_paraling_cache", "mark_cache"]

TAG_FILE = "CACHEDIR.TAG"
_SIGNATURE = "Signature: 8a477f597d28d172789f06886806bc55"
_TAG = f"{_SIGNATURE}\n# This folder is a cache written by paraling (feature cache, packs, checkpoints).\n"

#: The cache's sections (sub-folders) and the other entries paraling writes at its top.
SECTIONS = ("features", "packed", "functionals", "checkpoints")
_OTHER = ("locks", TAG_FILE)
#: Names paraling gives the entries of a section: hex keys (and their 2-character shards), the digest memo,
#: temporary files of interrupted writes.
_ENTRY = re.compile(r"^(?:[0-9a-f]{2,64}|digests|\..+\.tmp)$")


def mark_cache(cache_dir: str | Path) -> None:
    """Create ``cache_dir`` if needed and tag it as paraling's cache (idempotent)."""
    root = Path(cache_dir)
    root.mkdir(parents=True, exist_ok=True)
    tag = root / TAG_FILE
    if not tag.is_file():
        with atomic_path(tag) as tmp:
            tmp.write_text(_TAG)


def _tagged(root: Path) -> bool:
    tag = root / TAG_FILE
    try:
        return (
            not tag.is_symlink()
            and tag.read_text(errors="replace").startswith(_SIGNATURE)
            and "paraling" in (tag.read_text(errors="replace"))
        )
    except OSError:
        return False


def _paraling_layout(root: Path) -> bool:
    """Only paraling's sections at the top, each holding only entries named the way paraling names them."""
    entries = list(root.iterdir())
    if not entries:
        return False
    for e in entries:
        if e.name not in (*SECTIONS, *_OTHER) or e.is_symlink():
            return False
        if e.name in SECTIONS and (not e.is_dir() or any(not _ENTRY.match(c.name) for c in e.iterdir())):
            return False
    return True


def is_paraling_cache(cache_dir: str | Path) -> bool:
    """Whether ``cache_dir`` is a folder paraling wrote as its cache (tagged, or an untagged one in its layout)."""
    root = Path(cache_dir)
    if root.is_symlink() or not root.is_dir():
        return False
    return _tagged(root) or _paraling_layout(root)
