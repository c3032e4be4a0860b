"""Recipe for ComParE-style corpora: a CSV with columns ``file,label,speaker`` (extra columns kept)."""

from __future__ import annotations

import csv
import logging
from collections import Counter
from pathlib import Path
from typing import Any

from paraling.data.manifest import Manifest
from paraling.data.recipes.common import SkipLog, confine, make_utterance
from paraling.errors import CorpusError

__all__ = ["prepare_csv"]

log = logging.getLogger(__name__)


def prepare_csv(
    csv_path: str | Path,
    file_column: str = "file",
    label_column: str = "label",
    speaker_column: str = "speaker",
    split_column: str | None = None,
    allow_outside_root: bool = False,
    on_bad_file: str = "skip",
) -> Manifest:
    """Build a manifest from a CSV whose ``file`` column is relative to the CSV's folder.

    Args:
        csv_path: The CSV file.
        file_column: Column holding the audio path.
        label_column: Column holding the class label.
        speaker_column: Column holding the speaker id.
        split_column: Optional column with ``train``/``test`` for a fixed split (``split`` is used if present).
        allow_outside_root: Accept paths that leave the CSV's folder.
        on_bad_file: ``skip`` (log and count unreadable audio) or ``error``.

    Raises:
        CorpusError: Missing columns, rows without label/speaker, duplicate files, paths escaping the root.
    """
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise CorpusError(f"{csv_path}: CSV not found; pass corpus.path=/path/to/corpus.csv")
    root = csv_path.parent.resolve()
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.DictReader(fh))
            header = rows[0].keys() if rows else []
    except UnicodeDecodeError as exc:
        raise CorpusError(f"{csv_path}: not UTF-8 text ({exc}); save the CSV as UTF-8") from exc
    if not rows:
        raise CorpusError(f"{csv_path}: the CSV has no data rows")
    missing = [c for c in (file_column, label_column, speaker_column) if c not in header]
    if missing:
        raise CorpusError(
            f"{csv_path}: missing column(s) {missing} (found {list(header)}); the CSV needs "
            f"{file_column},{label_column},{speaker_column} or set corpus.file_column/label_column/speaker_column"
        )
    if split_column is None and "split" in header:
        split_column = "split"
    bad_rows = [
        n + 2
        for n, r in enumerate(rows)
        if not (r.get(file_column) or "").strip()
        or not (r.get(label_column) or "").strip()
        or not (r.get(speaker_column) or "").strip()
    ]
    if bad_rows:
        raise CorpusError(
            f"{csv_path}: rows {bad_rows[:10]}{'...' if len(bad_rows) > 10 else ''} lack a file, label or speaker; "
            "fill them in or delete those rows"
        )
    skips = SkipLog()
    utts = []
    seen: dict[Path, int] = {}
    fixed = {file_column, label_column, speaker_column, split_column}
    stems = [Path(r[file_column].strip()).with_suffix("").as_posix() for r in rows]
    clash = {k for k, v in Counter(stems).items() if v > 1}
    for n, (r, stem) in enumerate(zip(rows, stems, strict=True), 2):
        rel = r[file_column].strip()
        where = f"{csv_path}:{n}"
        path = confine(root, rel, allow_outside_root, where)
        if not path.exists():
            raise CorpusError(f"{where}: audio file {rel!r} not found under {root}; fix the path or remove the row")
        if path in seen:
            raise CorpusError(f"{where}: file {rel!r} is listed twice (rows {seen[path]} and {n}); remove one row")
        seen[path] = n
        uid = Path(rel).as_posix() if stem in clash else stem  # a.wav and a.flac both present: keep the suffix
        extra = {k: v for k, v in r.items() if k not in fixed and k is not None}
        split = (r.get(split_column) or "").strip() or None if split_column else None
        u = make_utterance(
            uid, path, r[label_column].strip(), r[speaker_column].strip(), on_bad_file, skips, split, extra
        )
        if u is not None:
            utts.append(u)
    if skips.skipped:
        log.warning("%s: %s", csv_path, skips.summary())
    manifest = Manifest(utts, source=str(csv_path))
    manifest.skipped = skips.skipped  # type: ignore[attr-defined]
    return manifest


def load_csv(cfg: Any) -> Manifest:
    """The ``csv`` recipe: :func:`prepare_csv` with a ``corpus`` node's settings."""
    return prepare_csv(
        cfg.path,
        cfg.file_column,
        cfg.label_column,
        cfg.speaker_column,
        cfg.split_column,
        cfg.allow_outside_root,
        cfg.on_bad_file,
    )
