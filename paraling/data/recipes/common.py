"""Shared steps of the corpus recipes: path confinement, header checks and the bad-file policy."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from paraling.data.audio import audio_info
from paraling.data.manifest import Utterance
from paraling.data.paths import confine
from paraling.errors import AudioError

__all__ = ["SkipLog", "confine", "make_utterance"]

log = logging.getLogger(__name__)


@dataclass
class SkipLog:
    """Counts and remembers files skipped under ``corpus.on_bad_file=skip``."""

    skipped: list[tuple[str, str]] = field(default_factory=list)

    def add(self, path: str, reason: str) -> None:
        """Record a skipped file and log it."""
        self.skipped.append((path, reason))
        log.warning("skipping %s", reason)

    def summary(self) -> str:
        """One line: how many files were skipped."""
        return f"{len(self.skipped)} unreadable file(s) skipped (corpus.on_bad_file=skip)"


def make_utterance(
    uid: str,
    path: Path,
    label: str,
    speaker: str,
    policy: str,
    skips: SkipLog,
    split: str | None = None,
    extra: dict | None = None,
) -> Utterance | None:
    """Read the header of ``path`` and build an utterance; apply the bad-file policy on failure.

    Returns:
        The utterance, or ``None`` when the file was skipped.

    Raises:
        AudioError: When the file is unreadable and ``policy`` is ``error``.
    """
    try:
        info = audio_info(path)
    except AudioError as exc:
        if policy == "error" or not path.exists():
            raise
        skips.add(str(path), str(exc))
        return None
    return Utterance(
        id=uid,
        path=os.fspath(path),
        label=label,
        speaker=speaker,
        duration=round(info.duration, 4),
        split=split,
        extra=extra or {},
    )
