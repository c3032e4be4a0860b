"""Leftovers of killed builds and writes are cleaned, whichever process, container or host left them."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from paraling.features import FeatureStore, LogMelSpec
from paraling.features.packed import PackStore


def _build(packs: PackStore, key: str) -> None:
    rows, kept = np.array([3]), np.array([True])

    def fill(data: np.ndarray, energy: np.ndarray) -> None:
        data[:] = 1.0
        energy[:] = 0.0

    packs.build(key, np.arange(3, dtype=np.int64).reshape(1, 3), rows, kept, 4, fill)


def test_a_killed_build_is_removed_even_when_its_pid_is_alive_here(tmp_path: Path) -> None:
    packs = PackStore(tmp_path)
    # another container's build, killed: its pid (here, ours: pids repeat across pid namespaces) is alive here
    dead = tmp_path / f".k1.{os.getpid()}.abc.tmp"
    dead.mkdir()
    (dead / ".lease").touch()
    _build(packs, "k1")
    assert not dead.exists() and (tmp_path / "k1").is_dir()


def test_a_running_build_of_another_process_is_left_alone(tmp_path: Path) -> None:
    packs = PackStore(tmp_path)
    live = tmp_path / ".k2.x.tmp"
    live.mkdir()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl,os,sys,time; fd=os.open(sys.argv[1], os.O_RDWR|os.O_CREAT); "
            "fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); time.sleep(60)",
            str(live / ".lease"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        _build(packs, "k2")
        assert live.exists()
    finally:
        holder.kill()
        holder.wait()
    _build(packs, "k3")
    assert not live.exists()


def test_moved_aside_packs_get_unique_names(tmp_path: Path) -> None:
    packs = PackStore(tmp_path)
    _build(packs, "k4")
    stale = tmp_path / f".k4.{os.getpid()}.old"  # what an earlier version left when killed mid-publish
    stale.mkdir()
    _build(packs, "k4")  # republishing moves the old pack aside under a new, unique name, then removes it
    assert (tmp_path / "k4").is_dir() and not stale.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith((".old", ".tmp"))]


def test_temporaries_of_killed_cache_writes_are_removed(tmp_path: Path) -> None:
    store = FeatureStore(tmp_path, LogMelSpec())
    old = tmp_path / "digests" / "ab" / ".abcdef.x1y2.tmp"
    new = tmp_path / "ab" / ".abcdef.npy.q9.tmp"
    entry = tmp_path / "ab" / "abcdef.npy"
    for f in (old, new, entry):
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(b"x")
    os.utime(old, (time.time() - 3600,) * 2)
    assert store.remove_stale_temporaries() == 1
    assert not old.exists() and new.exists() and entry.exists()  # a write in progress and real entries stay
