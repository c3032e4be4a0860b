"""``paraling cache info|clean [--cache-dir DIR] [--older-than DAYS]``: inspect or empty the feature cache.

Sections are the cache's sub-folders: ``features`` (one entry per audio file and augmentation), ``packed`` (one
memory-mapped pack per corpus and window layout; removed as whole folders, never file by file), ``checkpoints``, ...
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

__all__ = ["cache_info", "clean_cache", "main"]


def cache_info(cache_dir: Path) -> dict[str, dict[str, float]]:
    """Entries and megabytes per cache section (features, checkpoints, ...)."""
    out: dict[str, dict[str, float]] = {}
    if not cache_dir.is_dir():
        return out
    for section in sorted(p for p in cache_dir.iterdir() if p.is_dir()):
        files = [f for f in section.rglob("*") if f.is_file()]
        out[section.name] = {"files": len(files), "mb": sum(f.stat().st_size for f in files) / 1e6}
    return out


def clean_cache(cache_dir: Path, older_than_days: float | None = None, section: str | None = None) -> int:
    """Delete cache files (all, or those not used for ``older_than_days``); returns how many were removed."""
    if not cache_dir.is_dir():
        return 0
    roots = [cache_dir / section] if section else [p for p in cache_dir.iterdir() if p.is_dir()]
    if older_than_days is None:
        n = sum(1 for r in roots if r.exists() for f in r.rglob("*") if f.is_file())
        for r in roots:
            shutil.rmtree(r, ignore_errors=True)
        return n
    limit = time.time() - older_than_days * 86400

    def last_used(f: Path) -> float:
        st = f.stat()
        return max(st.st_atime, st.st_mtime)

    n = 0
    for r in roots:
        if r.name == "packed":  # a pack is used as a whole: keep it whole or remove it whole
            for pack in (d for d in r.iterdir() if d.is_dir()):
                files = [f for f in pack.rglob("*") if f.is_file()]
                if max(map(last_used, files), default=0.0) < limit:
                    shutil.rmtree(pack, ignore_errors=True)
                    n += len(files)
            continue
        for f in r.rglob("*"):
            if f.is_file() and last_used(f) < limit:
                f.unlink(missing_ok=True)
                n += 1
    return n


def main(argv: list[str]) -> int:
    """CLI entry point."""
    p = argparse.ArgumentParser(prog="paraling cache", description="Inspect or clean the feature cache.")
    p.add_argument("action", choices=["info", "clean"])
    p.add_argument("--cache-dir", default=".cache/paraling", help="cache folder (default: .cache/paraling)")
    p.add_argument("--older-than", type=float, default=None, metavar="DAYS", help="clean only entries unused for DAYS")
    p.add_argument("--section", default=None, help="only this section (features, checkpoints, ...)")
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
        n = clean_cache(root, a.older_than, a.section)
        print(f"removed {n} file(s) from {root}")
    return 0
