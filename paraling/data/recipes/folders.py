"""Recipe for a folder per class: ``ROOT/<label>/**/<file>.wav``; speaker from a filename regex."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from paraling.data.manifest import Manifest
from paraling.data.recipes.common import SkipLog, confine, make_utterance
from paraling.errors import ConfigError, CorpusError

__all__ = ["prepare_folders"]

log = logging.getLogger(__name__)


def prepare_folders(
    root: str | Path,
    speaker_regex: str | None = None,
    extensions: tuple[str, ...] | list[str] = (".wav", ".flac", ".ogg"),
    on_bad_file: str = "skip",
    allow_outside_root: bool = False,
) -> Manifest:
    """Build a manifest from one sub-folder per class.

    Args:
        root: Folder whose immediate sub-folders are class labels.
        speaker_regex: Regex applied to the file name (without folder); the group named ``speaker`` (or the first
            group, or the whole match) is the speaker id. ``None``: each file is its own speaker (a fallback that
            makes speaker-grouped CV equal to utterance-grouped CV; a warning says so).
        extensions: Audio file suffixes to include (case-insensitive).
        on_bad_file: ``skip`` or ``error`` for unreadable audio.
        allow_outside_root: Accept files (symbolic links) that resolve outside ``root``.

    Raises:
        CorpusError: No class folders, or a file name the regex does not match.
        ConfigError: An invalid regex.
    """
    root = Path(root)
    if not root.is_dir():
        raise CorpusError(f"{root}: folder not found; pass corpus.path=/path/to/class_folders")
    try:
        rx = re.compile(speaker_regex) if speaker_regex else None
    except re.error as exc:
        raise ConfigError(f"corpus.speaker_regex={speaker_regex!r} is not a valid regex: {exc}") from exc
    exts = {e.lower() for e in extensions}
    classes = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise CorpusError(f"{root}: no class sub-folders found; expected ROOT/<label>/<files>")
    if rx is None:
        log.warning("%s: no corpus.speaker_regex given; every file is treated as its own speaker", root)
    skips = SkipLog()
    utts = []
    for cdir in classes:
        for path in sorted(cdir.rglob("*")):
            if not path.is_file() or path.suffix.lower() not in exts:
                continue
            rel = path.relative_to(root)
            path = confine(root, rel, allow_outside_root, str(root))
            if rx is None:
                speaker = rel.with_suffix("").as_posix()
            else:
                m = rx.search(path.name)
                if not m:
                    raise CorpusError(
                        f"{path}: file name does not match corpus.speaker_regex={speaker_regex!r}; "
                        "rename the file or adjust the regex"
                    )
                speaker = m.groupdict().get("speaker") or (m.group(1) if m.groups() else m.group(0))
            u = make_utterance(rel.with_suffix("").as_posix(), path, cdir.name, speaker, on_bad_file, skips)
            if u is not None:
                utts.append(u)
    if skips.skipped:
        log.warning("%s: %s", root, skips.summary())
    return Manifest(utts, source=str(root))


def load_folders(cfg: Any) -> Manifest:
    """The ``folders`` recipe: :func:`prepare_folders` with a ``corpus`` node's settings."""
    return prepare_folders(cfg.path, cfg.speaker_regex, tuple(cfg.extensions), cfg.on_bad_file, cfg.allow_outside_root)
