"""CREMA-D (Cao et al., 2014): ``ROOT/AudioWAV/1001_DFA_ANG_XX.wav``.

The name holds the actor (1001-1091), the sentence (12 codes), the emotion (ANG, DIS, FEA, HAP, NEU, SAD) and the
intensity (LO, MD, HI, XX unspecified). 7,442 clips of 91 actors; protocol: 5 speaker-grouped folds.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from paraling.data.manifest import Manifest, Utterance
from paraling.data.recipes.common import SkipLog
from paraling.data.recipes.standard import (
    CATALOG,
    CorpusInfo,
    Parsed,
    check_counts,
    load_prepared,
    prepare,
    scan_named,
)
from paraling.errors import CorpusError

__all__ = ["EMOTIONS", "INFO", "load_cremad", "prepare_cremad"]

EMOTIONS = {"ANG": "anger", "DIS": "disgust", "FEA": "fear", "HAP": "happy", "NEU": "neutral", "SAD": "sad"}
_NAME = re.compile(r"^(?P<actor>1\d{3})_(?P<sentence>[A-Z]{3})_(?P<emotion>[A-Z]{3})_(?P<level>LO|MD|HI|XX|X)$")

INFO = CorpusInfo(
    "cremad",
    "Crowd-sourced Emotional Multimodal Actors Dataset (CREMA-D)",
    "https://github.com/CheyneyComputerScience/CREMA-D (AudioWAV/)",
    "ODbL",
    tuple(sorted(EMOTIONS.values())),
    91,
    7442,
    "5 speaker-grouped folds (cv=kfold)",
)
CATALOG[INFO.name] = INFO


def _parse(stem: str) -> Parsed:
    m = _NAME.match(stem)
    if m is None or m["emotion"] not in EMOTIONS:
        return None
    return EMOTIONS[m["emotion"]], m["actor"], {"sentence": m["sentence"], "level": m["level"]}


def _scan(root: Path, skips: SkipLog, on_bad_file: str) -> list[Utterance]:
    wav = root / "AudioWAV"
    if not wav.is_dir():
        raise CorpusError(
            f"{root}: no AudioWAV/ folder; CREMA-D's audio is ROOT/AudioWAV/1001_DFA_ANG_XX.wav ...: set corpus.path "
            "to the folder that holds AudioWAV/"
        )
    utts = scan_named(wav, sorted(wav.glob("*.wav")), _parse, "CREMA-D", on_bad_file, skips)
    check_counts(INFO, utts, complete=len(utts) == INFO.files)
    return utts


def prepare_cremad(root: str | Path, out_dir: str | Path, on_bad_file: str = "skip") -> Path:
    """Write CREMA-D's manifest into ``out_dir``.

    Raises:
        CorpusError: No ``AudioWAV/`` folder, or a complete tree whose classes or speakers differ from CREMA-D's.
    """
    scan = lambda r, s: _scan(r, s, on_bad_file)  # noqa: E731
    return prepare("cremad", root, out_dir, scan, {"on_bad_file": on_bad_file}, ["AudioWAV"])


def load_cremad(cfg: Any) -> Manifest:
    """The ``cremad`` recipe: :func:`prepare_cremad` into ``corpus.manifest_dir``, then the manifest."""
    return load_prepared("cremad", cfg, prepare_cremad)
