"""Where ``paraling predict`` writes: checked before any prediction runs, written atomically.

``--out`` must not be one of the input files (``predict --out a.wav b.wav`` used to overwrite ``a.wav`` with CSV), a
folder, or a path under a file, and its folder must be writable; an existing file is replaced only when it is a
previous prediction table (``path,label,error,...`` CSV or the JSON records) or with ``--force``. ``--explain DIR``
must be a folder of this user's (not one another user created, e.g. in ``/tmp``), and every file in it is written
through a temporary file and a rename, so a symbolic link planted at ``DIR/segments.json`` is replaced, never
followed. All of this is checked before the model is loaded, so nothing is predicted only to be lost.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Sequence
from pathlib import Path

from paraling.errors import ConfigError

__all__ = ["check_explain_dir", "check_out", "is_prediction_table"]

_HEADER = ("path", "label", "error")


def is_prediction_table(path: Path) -> bool:
    """Whether ``path`` holds what ``paraling predict --out`` writes (CSV with its header, or its JSON records)."""
    try:
        with open(path, encoding="utf-8", errors="strict") as f:
            head = f.read(65536)
    except (OSError, UnicodeDecodeError):
        return False
    if path.suffix.lower() == ".json":
        try:
            records = json.loads(Path(path).read_text())
        except (OSError, ValueError):
            return False
        return isinstance(records, list) and all(isinstance(r, dict) and set(_HEADER) <= set(r) for r in records)
    return tuple(head.split("\n", 1)[0].strip().split(",")[:3]) == _HEADER


def _writable_parent(path: Path, flag: str) -> None:
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(f"{flag} {path}: {parent} is a file, not a folder; choose a path in a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"{flag} {path}: the folder {parent} is not writable; choose another path")


def check_out(out: str | None, inputs: Sequence[str], force: bool = False) -> None:
    """Refuse an ``--out`` target that would overwrite an input, a folder or someone's file, or cannot be written.

    Raises:
        ConfigError: Naming the target and the fix.
    """
    if out is None:
        return
    path = Path(out)
    for f in inputs:
        same = path.exists() and Path(f).exists() and os.path.samefile(path, f)
        if same or path.resolve() == Path(f).resolve():
            raise ConfigError(f"--out {out} is one of the input files; write the predictions to another file")
    if path.is_dir():
        raise ConfigError(f"--out {out} is a folder; give a file name such as {path / 'predictions.csv'}")
    if path.exists() and not force and not is_prediction_table(path):
        raise ConfigError(
            f"--out {out} exists and is not a paraling prediction table; choose another name or add --force to "
            "overwrite it"
        )
    _writable_parent(path, "--out")


def check_explain_dir(folder: str | None) -> None:
    """Refuse an ``--explain`` folder that is not this user's own folder, or cannot be created.

    Raises:
        ConfigError: Naming the folder and the fix.
    """
    if folder is None:
        return
    path = Path(folder)
    if path.is_symlink():
        raise ConfigError(f"--explain {folder} is a symbolic link; give a real folder of yours")
    if path.exists():
        st = path.stat()
        if not stat.S_ISDIR(st.st_mode):
            raise ConfigError(f"--explain {folder} exists and is not a folder; choose another name")
        if st.st_uid != os.getuid():
            raise ConfigError(
                f"--explain {folder} belongs to another user (uid {st.st_uid}); choose a folder of your own"
            )
        if not os.access(path, os.W_OK | os.X_OK):
            raise ConfigError(f"--explain {folder} is not writable; choose another folder")
        return
    _writable_parent(path, "--explain")
