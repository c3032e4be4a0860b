"""The native kernel library is only loaded from this user's own private build: planted libraries never run."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from paraling.ops import build as native

CC = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
pytestmark = pytest.mark.skipif(CC is None, reason="needs a C compiler to build the planted library")

PLANTED_C = r"""
#include <stdio.h>
#include <stdlib.h>
__attribute__((constructor)) static void planted(void) {
    const char *m = getenv("PARALING_PLANTED_MARKER");
    FILE *f = m ? fopen(m, "w") : NULL;
    if (f) { fputs("planted code ran\n", f); fclose(f); }
}
int pl_random_bytes(void) { return 0; }
"""


@pytest.fixture()
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[pytest.MonkeyPatch]:
    """A clean slate: no loaded library, the temp folder and the marker under ``tmp_path``."""
    native.load_library.cache_clear()
    monkeypatch.setattr(native.tempfile, "gettempdir", lambda: str(tmp_path / "tmp"))
    monkeypatch.setenv("PARALING_PLANTED_MARKER", str(tmp_path / "marker"))
    (tmp_path / "tmp").mkdir()
    yield monkeypatch
    native.load_library.cache_clear()


def _plant(path: Path) -> Path:
    """A library with a constructor (it runs on load) under ``path``, with a matching ``.sha256`` beside it."""
    src = path.parent / "planted.c"
    src.write_text(PLANTED_C)
    tmp = path.parent / "planted.so.tmp"
    subprocess.run([CC, "-shared", "-fPIC", str(src), "-o", str(tmp)], check=True)
    os.replace(tmp, path)  # a new file, as an attacker would leave it
    path.with_suffix(".sha256").write_text(native._sha256(path))
    return path


def test_a_library_in_a_folder_others_can_write_is_not_loaded(
    env: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    _plant(shared / native.library_name(CC))
    shared.chmod(0o777)  # like a folder in /tmp another user made
    env.setenv("PARALING_NATIVE_DIR", str(shared))
    with caplog.at_level(logging.WARNING, logger="paraling.ops.build"):
        lib = native.load_library()
    assert not (tmp_path / "marker").exists()
    assert "is not a private folder of this user" in caplog.text
    assert lib is not None and hasattr(lib, "pl_first_block_forward")  # the real one, built in a private folder
    built = tmp_path / "tmp" / f"paraling-native-{os.getuid()}"
    assert (built.stat().st_mode & 0o777) == 0o700 and list(built.glob("paraling-*.so"))


def test_a_temp_folder_of_another_user_is_not_used(
    env: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    env.setattr(native, "_cache_dir", lambda: Path("/proc/no-such-dir/native"))  # unwritable, even for root
    planted_dir = tmp_path / "tmp" / f"paraling-native-{os.getuid()}"
    planted_dir.mkdir()
    _plant(planted_dir / native.library_name(CC))
    planted_dir.chmod(0o777)
    with caplog.at_level(logging.WARNING, logger="paraling.ops.build"):
        lib = native.load_library()
    assert not (tmp_path / "marker").exists()
    assert lib is not None and hasattr(lib, "pl_conv_pool_backward")


@pytest.mark.parametrize("tamper", ["writable by others", "content changed"])
def test_a_tampered_file_in_the_private_folder_is_rebuilt(
    env: pytest.MonkeyPatch, tmp_path: Path, tamper: str, caplog: pytest.LogCaptureFixture
) -> None:
    d = tmp_path / "native"
    env.setenv("PARALING_NATIVE_DIR", str(d))
    d.mkdir(mode=0o700)
    path = d / native.library_name(CC)
    native._build_verified(CC, path)  # the user's real build, not loaded yet (a loaded path would not be re-read)
    if tamper == "writable by others":
        _plant(path)
        path.chmod(0o666)
    else:
        digest = path.with_suffix(".sha256").read_text()
        _plant(path)
        path.with_suffix(".sha256").write_text(digest)  # the recorded hash is of the real build
    with caplog.at_level(logging.WARNING, logger="paraling.ops.build"):
        lib = native.load_library()
    assert not (tmp_path / "marker").exists()
    assert "rebuilding it" in caplog.text
    assert lib is not None and hasattr(lib, "pl_pool_forward")


def test_a_library_without_the_kernels_falls_back_with_a_warning(
    env: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    d = tmp_path / "native"
    d.mkdir(mode=0o700)
    env.setenv("PARALING_NATIVE_DIR", str(d))
    env.setattr(native, "_build", lambda cc, out: _plant(out))  # this user's own build, but of the wrong code
    with caplog.at_level(logging.WARNING, logger="paraling.ops.build"):
        assert native.load_library() is None
    assert "native CPU kernels unavailable" in caplog.text and "pl_first_block_forward" in caplog.text
