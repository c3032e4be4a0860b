"""A ComParE challenge task as distributed: ``ROOT/wav/train_0001.wav``, ``devel_*``, ``test_*``, labels in
``ROOT/lab/*.tsv`` or ``*.csv`` (a file-name column and a label column; the test labels are usually withheld).

The partition comes from the file name. The challenge protocol: tune on train, score devel (``corpus=compare`` sets
``cv=challenge``: ``cv.scheme=split``, ``cv.test_split=devel``; the test files are not trained on); then train on
train + devel and score test (``cv.test_split=test``) where its labels are there. Test files without labels are left
out of the manifest (counted in the log); ``paraling train`` labels them with the run's model afterwards
(:mod:`paraling.serving.challenge`, the artifact ``predictions/test.csv``).
Speakers come from ``corpus.speaker_column`` when the label file has one, else each file is its own group (the
partitions are speaker-independent by the challenge's design).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from paraling.data.manifest import Manifest, Utterance
from paraling.data.recipes.common import SkipLog, make_utterance
from paraling.data.recipes.standard import CATALOG, CorpusInfo, left_out, load_prepared, prepare
from paraling.errors import CorpusError

__all__ = ["INFO", "load_compare", "prepare_compare", "read_labels", "unlabelled_test"]

SPLITS = ("train", "devel", "test")
_FILE_COLUMNS = ("file_name", "filename", "file", "name", "instance_name", "id")
_UNLABELLED = ("", "?")

INFO = CorpusInfo(
    "compare",
    "a ComParE challenge task (INTERSPEECH Computational Paralinguistics Challenge)",
    "the challenge organisers (per task, after signing its licence)",
    "per task, research",
    (),
    None,
    None,
    "challenge: train -> devel (cv=challenge), then train+devel -> test (cv.test_split=test)",
)
CATALOG[INFO.name] = INFO


def _columns(header: list[str], label_column: str | None, where: Path) -> tuple[int, int]:
    lower = [h.strip().lower() for h in header]
    file_col = next((lower.index(c) for c in _FILE_COLUMNS if c in lower), 0)
    if label_column is not None:
        if label_column.lower() not in lower:
            raise CorpusError(f"{where}: no column {label_column!r} (corpus.label_column); it has {header}")
        return file_col, lower.index(label_column.lower())
    if "label" in lower:
        return file_col, lower.index("label")
    if len(header) < 2:
        raise CorpusError(f"{where}: one column only; a label file needs a file-name column and a label column")
    return file_col, 1 if file_col == 0 else 0


def read_labels(lab: Path, label_column: str | None = None, speaker_column: str | None = None) -> dict[str, dict]:
    """``file name -> {"label": ..., "speaker": ...}`` from every ``.tsv``/``.csv`` in ``lab`` (file names with or
    without ``.wav``; an empty or ``?`` label means unlabelled).

    Raises:
        CorpusError: No label file, or one without the columns it needs.
    """
    files = sorted(p for p in lab.glob("*") if p.suffix.lower() in (".tsv", ".csv"))
    if not files:
        raise CorpusError(f"{lab}: no label file (.tsv or .csv); ComParE tasks ship ROOT/lab/<task>.tsv or .csv")
    out: dict[str, dict] = {}
    for path in files:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.reader(fh, delimiter="\t" if path.suffix.lower() == ".tsv" else ","))
        if not rows:
            continue
        header = rows[0]
        fcol, lcol = _columns(header, label_column, path)
        scol = [h.strip().lower() for h in header].index(speaker_column.lower()) if speaker_column else None
        if speaker_column and speaker_column.lower() not in [h.strip().lower() for h in header]:
            raise CorpusError(f"{path}: no column {speaker_column!r} (corpus.speaker_column); it has {header}")
        for row in rows[1:]:
            if len(row) <= max(fcol, lcol):
                continue
            name = Path(row[fcol].strip()).stem
            out[name] = {"label": row[lcol].strip(), "speaker": row[scol].strip() if scol is not None else None}
    return out


def _scan(
    root: Path, skips: SkipLog, on_bad_file: str, label_column: str | None, speaker_column: str | None
) -> list[Utterance]:
    wav, lab = root / "wav", root / "lab"
    for folder, what in ((wav, "the audio (train_*.wav, devel_*, test_*)"), (lab, "the label files")):
        if not folder.is_dir():
            raise CorpusError(f"{root}: no {folder.name}/ folder with {what}; set corpus.path to the task's root")
    labels = read_labels(lab, label_column, speaker_column)
    utts, unlabelled_test = [], 0
    for path in sorted(wav.glob("*.wav")):
        split = path.stem.split("_", 1)[0].lower()
        if split not in SPLITS:
            left_out(path, "not a train_/devel_/test_ file, left out")
            continue
        entry = labels.get(path.stem)
        if entry is None or entry["label"] in _UNLABELLED:
            if split == "test":
                unlabelled_test += 1
                continue
            raise CorpusError(f"{path}: no label in {lab} for this {split} file; the label files are incomplete")
        speaker = entry["speaker"] or path.stem
        u = make_utterance(path.stem, path, entry["label"], speaker, on_bad_file, skips, split=split)
        if u is not None:
            utts.append(u)
    if unlabelled_test:
        left_out(
            wav,
            f"{unlabelled_test} test file(s) without labels (withheld by the challenge) left out: score devel and "
            "predict them with paraling predict",
        )
    return utts


def unlabelled_test(root: str | Path, label_column: str | None = None) -> list[Path]:
    """The task's test files without a label (the challenge withholds them), sorted; ``[]`` when all are labelled."""
    root = Path(root)
    labels = read_labels(root / "lab", label_column)
    return [
        p for p in sorted((root / "wav").glob("test_*.wav")) if labels.get(p.stem, {}).get("label", "") in _UNLABELLED
    ]


def prepare_compare(
    root: str | Path,
    out_dir: str | Path,
    on_bad_file: str = "skip",
    label_column: str | None = None,
    speaker_column: str | None = None,
) -> Path:
    """Write a ComParE task's manifest (with each file's partition in ``split``) into ``out_dir``.

    Raises:
        CorpusError: No ``wav/`` or ``lab/`` folder, no label file, or a train/devel file without a label.
    """
    options = {"on_bad_file": on_bad_file, "label_column": label_column, "speaker_column": speaker_column}
    scan = lambda r, s: _scan(r, s, on_bad_file, label_column, speaker_column)  # noqa: E731
    return prepare("compare", root, out_dir, scan, options)


def load_compare(cfg: Any) -> Manifest:
    """The ``compare`` recipe: :func:`prepare_compare` into ``corpus.manifest_dir``, then the manifest."""
    return load_prepared(
        "compare", cfg, prepare_compare, label_column=cfg.label_column, speaker_column=cfg.speaker_column
    )
