"""Atomic writes give files and pack folders the mode a plain write would: the umask decides, not mkstemp."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest

from paraling.atomic import atomic_path, current_umask
from paraling.features.packed import PackStore


@pytest.fixture(params=[0o022, 0o002, 0o077])
def umask(request: pytest.FixtureRequest):
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def test_files_follow_the_umask(tmp_path: Path, umask: int) -> None:
    assert current_umask() == umask
    with atomic_path(tmp_path / "x.txt") as tmp:
        tmp.write_text("x")
    assert stat.S_IMODE((tmp_path / "x.txt").stat().st_mode) == 0o666 & ~umask


def test_pack_folders_follow_the_umask(tmp_path: Path, umask: int) -> None:
    packs = PackStore(tmp_path)
    rows, kept = np.array([3]), np.array([True])
    packs.build("k", np.arange(3, dtype=np.int64).reshape(1, 3), rows, kept, 4, lambda d, e: None)
    assert stat.S_IMODE((tmp_path / "k").stat().st_mode) == 0o777 & ~umask
    assert stat.S_IMODE((tmp_path / "k" / "meta.json").stat().st_mode) == 0o666 & ~umask
