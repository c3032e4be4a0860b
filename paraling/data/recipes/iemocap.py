"""IEMOCAP (Busso et al., 2008): ``ROOT/SessionN/sentences/wav/<dialog>/<utterance>.wav``, labels from
``ROOT/SessionN/dialog/EmoEvaluation/<dialog>.txt`` (the line ``[start - end]<TAB>utterance<TAB>label<TAB>[v, a, d]``
per utterance: the evaluators' majority label).

The standard 4-class set (``corpus.label_map``): neutral, happy merged with excited, angry, sad (5,531 utterances);
other labels are left out (counted in the log). Five sessions of two actors each: the speaker is the session and the
gender letter of the utterance id's last part (``Ses01F_impro01_M000`` is session 1's male speaker, whatever the
dialog's letter), the group is the session. Protocol: leave-one-session-out (``corpus=iemocap`` sets
``cv=leave_one_session_out``: ``cv.scheme=loso``, ``cv.group_by=session``).
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

from paraling.data.manifest import Manifest, Utterance
from paraling.data.recipes.common import SkipLog, make_utterance
from paraling.data.recipes.standard import CATALOG, CorpusInfo, check_counts, left_out, load_prepared, prepare
from paraling.errors import CorpusError

__all__ = ["FOUR_CLASSES", "INFO", "load_iemocap", "parse_evaluation", "prepare_iemocap"]

#: The 4-class set of the literature (SUPERB, EmoBox): excited merged into happy.
FOUR_CLASSES = {"neu": "neutral", "hap": "happy", "exc": "happy", "ang": "angry", "sad": "sad"}
_LINE = re.compile(r"^\[(?P<start>[\d.]+) - (?P<end>[\d.]+)\]\t(?P<utt>\S+)\t(?P<label>\S+)\t\[")

INFO = CorpusInfo(
    "iemocap",
    "Interactive Emotional Dyadic Motion Capture database (IEMOCAP)",
    "https://sail.usc.edu/iemocap (release form, then IEMOCAP_full_release)",
    "research licence",
    ("angry", "happy", "neutral", "sad"),
    10,
    5531,
    "leave-one-session-out (cv=leave_one_session_out)",
)
CATALOG[INFO.name] = INFO


def parse_evaluation(path: Path) -> dict[str, str]:
    """``utterance id -> label`` of one ``EmoEvaluation/<dialog>.txt`` (its summary lines)."""
    out = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        m = _LINE.match(line)
        if m:
            out[m["utt"]] = m["label"]
    return out


def _speaker(utt: str) -> tuple[str, str]:
    """``(speaker, session)`` of an utterance id: ``Ses01F_impro01_M000`` -> ``(Ses01M, Ses01)``."""
    session, gender = utt[:5], utt.rsplit("_", 1)[-1][:1]
    return session + gender, session


def _labels(session: Path) -> dict[str, str]:
    folder = session / "dialog" / "EmoEvaluation"
    if not folder.is_dir():
        raise CorpusError(
            f"{session}: no dialog/EmoEvaluation/ folder with the label files; IEMOCAP_full_release has "
            f"{session.name}/dialog/EmoEvaluation/<dialog>.txt"
        )
    labels: dict[str, str] = {}
    for txt in sorted(folder.glob("*.txt")):
        labels |= parse_evaluation(txt)
    return labels


def _scan(root: Path, skips: SkipLog, on_bad_file: str, label_map: dict[str, str]) -> list[Utterance]:
    sessions = sorted(p for p in root.glob("Session[1-5]") if p.is_dir())
    if not sessions:
        raise CorpusError(
            f"{root}: no Session1 ... Session5 folders; set corpus.path to IEMOCAP_full_release (the folder that "
            "holds Session1/sentences/wav/...)"
        )
    utts: list[Utterance] = []
    dropped: Counter[str] = Counter()
    for session in sessions:
        labels = _labels(session)
        wavs = sorted((session / "sentences" / "wav").glob("*/*.wav"))
        unlabelled = [w for w in wavs if w.stem not in labels]
        if unlabelled:
            dialog = unlabelled[0].parent.name
            raise CorpusError(
                f"{session}/dialog/EmoEvaluation/{dialog}.txt: no label for {len(unlabelled)} wav file(s) such as "
                f"{unlabelled[0].name}; the label file is missing or truncated"
            )
        for wav in wavs:
            raw = labels[wav.stem]
            if raw not in label_map:
                dropped[raw] += 1
                continue
            speaker, group = _speaker(wav.stem)
            extra = {"session": group, "dialog": wav.parent.name, "original_label": raw}
            u = make_utterance(wav.stem, wav, label_map[raw], speaker, on_bad_file, skips, extra=extra)
            if u is not None:
                utts.append(u)
    if dropped:
        left_out(root, f"labels outside corpus.label_map left out: {dict(sorted(dropped.items()))}")
    complete = len(sessions) == 5 and label_map == FOUR_CLASSES and len(utts) == INFO.files
    check_counts(INFO, utts, complete)
    return utts


def prepare_iemocap(
    root: str | Path, out_dir: str | Path, on_bad_file: str = "skip", label_map: dict[str, str] | None = None
) -> Path:
    """Write IEMOCAP's manifest into ``out_dir`` with labels mapped by ``label_map`` (default: the 4-class set).

    Raises:
        CorpusError: No ``SessionN`` folders, a session without label files, or wav files without a label.
    """
    mapping = dict(label_map or FOUR_CLASSES)
    options = {"on_bad_file": on_bad_file, "label_map": mapping}
    scan = lambda r, s: _scan(r, s, on_bad_file, mapping)  # noqa: E731
    return prepare("iemocap", root, out_dir, scan, options)


def load_iemocap(cfg: Any) -> Manifest:
    """The ``iemocap`` recipe: :func:`prepare_iemocap` into ``corpus.manifest_dir``, then the manifest."""
    mapping = dict(cfg.label_map) if cfg.label_map else None
    return load_prepared("iemocap", cfg, prepare_iemocap, label_map=mapping)
