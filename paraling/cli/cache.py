"""``paraling cache info|clean [--cache-dir DIR] [--older-than DAYS] [--yes]``: inspect or empty the feature cache.

Sections are the cache's sub-folders: ``features`` (one entry per audio file and augmentation), ``packed`` (one
memory-mapped pack per corpus and window layout; removed as whole folders, never file by file), ``checkpoints``, ...
``clean`` deletes only inside a folder that is paraling's cache (:mod:`paraling.cache_marker`: its ``CACHEDIR.TAG``,
or paraling's layout), refuses negative or non-finite ages, and on a terminal asks before deleting everything.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import shutil
import stat
import sys
import time
from pathlib import Path

from paraling.cache_marker import SECTIONS, TAG_FILE, is_paraling_cache, mark_cache
from paraling.errors import ConfigError

__all__ = ["SECTIONS", "cache_info", "clean_cache", "main"]

log = logging.getLogger(__name__)


def cache_info(cache_dir: Path) -> dict[str, dict[str, float]]:
    """Entries and megabytes per cache section (features, checkpoints, ...)."""
    out: dict[str, dict[str, float]] = {}
    if not cache_dir.is_dir():
        return out
    for section in sorted(p for p in cache_dir.iterdir() if p.is_dir()):
        files = [f for f in section.rglob("*") if f.is_file()]
        out[section.name] = {"files": len(files), "mb": sum(f.stat().st_size for f in files) / 1e6}
    return out


def _section_roots(cache_dir: Path, section: str | None) -> list[Path]:
    """The section folders to clean: names from :data:`SECTIONS` only; symbolic links are never followed.

    Raises:
        ConfigError: ``section`` is not one of :data:`SECTIONS` (a path, ``..``, a typo).
    """
    if section is not None and section not in SECTIONS:
        raise ConfigError(f"--section must be one of {', '.join(SECTIONS)}, but got --section {section!r}")
    roots = []
    for name in [section] if section else SECTIONS:
        r = cache_dir / name
        if r.is_symlink():
            log.warning("%s is a symbolic link; paraling cache clean does not follow it (remove it yourself)", r)
        elif r.is_dir():
            roots.append(r)
    return roots


def _files(root: Path) -> list[Path]:
    """Regular files under ``root``, not following symbolic links (a link is removed as a link, never its target)."""
    out = []
    for dirpath, _, names in os.walk(root, followlinks=False):
        for name in names:
            f = Path(dirpath) / name
            if f.is_symlink() or stat.S_ISREG(f.lstat().st_mode):
                out.append(f)
    return out


def check_clean(cache_dir: Path, older_than_days: float | None) -> None:
    """Refuse to clean what is not paraling's cache, and ages that would delete everything by accident.

    Raises:
        ConfigError: ``older_than_days`` negative or not finite; ``cache_dir`` not a paraling cache.
    """
    if older_than_days is not None and not (math.isfinite(older_than_days) and older_than_days >= 0):
        raise ConfigError(f"--older-than must be a number of days >= 0, but got --older-than {older_than_days}")
    if cache_dir.exists() and not is_paraling_cache(cache_dir):
        raise ConfigError(
            f"{cache_dir} is not a paraling cache (no {TAG_FILE} written by paraling, and it holds other things than "
            f"paraling's sections {', '.join(SECTIONS)}); nothing was deleted. Point --cache-dir at the cache "
            "(the cache_dir of your runs, default .cache/paraling)"
        )


def clean_cache(cache_dir: Path, older_than_days: float | None = None, section: str | None = None) -> int:
    """Delete cache files (all, or those not used for ``older_than_days``); returns how many were removed.

    Only the sections in :data:`SECTIONS` are touched, and only inside a folder that is paraling's cache.

    Raises:
        ConfigError: ``section`` is not a section name, the age is negative, or ``cache_dir`` is not a paraling
            cache (:func:`check_clean`).
    """
    check_clean(cache_dir, older_than_days)
    roots = _section_roots(cache_dir, section)
    if roots:
        mark_cache(cache_dir)  # an untagged cache recognised by its layout: tag it
    if older_than_days is None:
        n = sum(len(_files(r)) for r in roots)
        for r in roots:
            shutil.rmtree(r, ignore_errors=True)
        return n
    limit = time.time() - older_than_days * 86400

    def last_used(f: Path) -> float:
        st = f.lstat()
        return max(st.st_atime, st.st_mtime)

    n = 0
    for r in roots:
        if r.name == "packed":  # a pack is used as a whole: keep it whole or remove it whole
            for pack in (d for d in r.iterdir() if d.is_dir() and not d.is_symlink()):
                files = _files(pack)
                if max(map(last_used, files), default=0.0) < limit:
                    shutil.rmtree(pack, ignore_errors=True)
                    n += len(files)
            continue
        for f in _files(r):
            if last_used(f) < limit:
                f.unlink(missing_ok=True)
                n += 1
    return n


def main(argv: list[str]) -> int:
    """CLI entry point."""
    p = argparse.ArgumentParser(prog="paraling cache", description="Inspect or clean the feature cache.")
    p.add_argument("action", choices=["info", "clean"])
    p.add_argument("--cache-dir", default=".cache/paraling", help="cache folder (default: .cache/paraling)")
    p.add_argument("--older-than", type=float, default=None, metavar="DAYS", help="clean only entries unused for DAYS")
    p.add_argument("--section", default=None, help=f"only this section: {', '.join(SECTIONS)}")
    p.add_argument("--yes", action="store_true", help="do not ask before deleting everything (on a terminal)")
    a = p.parse_args(argv)
    root = Path(a.cache_dir)
    if a.action == "info":
        info = cache_info(root)
        if not info:
            print(f"{root}: empty")
        for name, v in info.items():
            print(f"{name:<14} {int(v['files']):>8} files {v['mb']:>10.1f} MB")
        print(f"free disk space: {shutil.disk_usage(root if root.exists() else Path('.')).free / 1e9:.1f} GB")
    else:
        check_clean(root, a.older_than)
        if a.older_than is None and not a.yes and sys.stdin.isatty() and not _confirm(root, a.section):
            print("nothing deleted")
            return 1
        n = clean_cache(root, a.older_than, a.section)
        print(f"removed {n} file(s) from {root}")
    return 0


def _confirm(root: Path, section: str | None) -> bool:
    info = cache_info(root)
    files = sum(int(v["files"]) for k, v in info.items() if section in (None, k) and k in SECTIONS)
    mb = sum(v["mb"] for k, v in info.items() if section in (None, k) and k in SECTIONS)
    answer = input(f"delete {files} file(s), {mb:.0f} MB, from the paraling cache {root}? [y/N] ")
    return answer.strip().lower() in ("y", "yes")
