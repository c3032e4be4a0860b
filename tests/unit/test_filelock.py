"""The one flock helper: exclusive across processes, released by the kernel when the holder dies."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from paraling.filelock import acquire, file_lock, is_free


def _holder(path: Path) -> subprocess.Popen[str]:
    code = (
        f"from paraling.filelock import acquire; import time; acquire({str(path)!r}); "
        "print('held', flush=True); time.sleep(60)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_another_process_holds_it_until_it_dies(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "x.lock"
    proc = _holder(path)
    try:
        assert not is_free(path)
        with pytest.raises(BlockingIOError):
            acquire(path, blocking=False)
    finally:
        proc.kill()
        proc.wait()
    assert is_free(path)  # SIGKILL left no lock behind
    with file_lock(path, blocking=False):
        assert not _free_elsewhere(path)
    assert _free_elsewhere(path)


def _free_elsewhere(path: Path) -> bool:
    code = f"from paraling.filelock import is_free; print(is_free({str(path)!r}))"
    return (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
        == "True"
    )


def test_is_free_of_a_missing_file_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        is_free(tmp_path / "none.lock")
