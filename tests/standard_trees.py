"""Tiny trees of the standard corpora as distributed (real folder layout, file naming and label files), with short
generated audio, for the recipe tests. Each ``make_<name>(root)`` returns ``root``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

SR = 16000


def _wav(path: Path, seed: int, seconds: float = 0.4) -> None:
    """A short tone + noise whose pitch depends on ``seed`` (so classes differ a little)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(SR * seconds)) / SR
    x = 0.3 * np.sin(2 * np.pi * (150 + 40 * (seed % 8)) * t) + 0.05 * rng.standard_normal(len(t))
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, x.astype(np.float32), SR, subtype="PCM_16")


def make_emodb(root: Path, speakers: tuple[str, ...] = ("03", "08", "10", "13")) -> Path:
    """``wav/<speaker><text><emotion><version>.wav``: every emotion once per speaker, plus one stray file."""
    for i, spk in enumerate(speakers):
        for j, letter in enumerate("WLEAFTN"):
            _wav(root / "wav" / f"{spk}a0{j % 5 + 1}{letter}{'abc'[i % 3]}.wav", j)
    _wav(root / "wav" / "notes.wav", 99)  # not in the scheme: left out, counted
    return root


def make_ravdess(root: Path, actors: int = 6) -> Path:
    """``Actor_NN/03-CC-EE-II-SS-RR-NN.wav``: 8 emotions per actor in speech, one song file per actor."""
    for a in range(1, actors + 1):
        for e in range(1, 9):
            intensity = 1 if e == 1 else 2
            _wav(root / f"Actor_{a:02d}" / f"03-01-{e:02d}-{intensity:02d}-01-01-{a:02d}.wav", e)
        _wav(root / f"Actor_{a:02d}" / f"03-02-03-01-01-01-{a:02d}.wav", 3)  # song: left out by default
    return root


def make_cremad(root: Path, actors: int = 6) -> Path:
    """``AudioWAV/<actor>_<sentence>_<emotion>_<level>.wav``: 6 emotions per actor."""
    for a in range(actors):
        for k, emo in enumerate(("ANG", "DIS", "FEA", "HAP", "NEU", "SAD")):
            _wav(root / "AudioWAV" / f"{1001 + a}_{'DFA' if k % 2 else 'IEO'}_{emo}_{'HI' if k % 3 else 'XX'}.wav", k)
    return root


# (utterance suffix, label) per dialog: F and M turns; exc merges into happy, fru and xxx are left out
_TURNS = list(
    zip(
        ("F000", "M000", "F001", "M001", "F002", "M002", "F003", "M003", "F004", "M004", "F005", "M005"),
        ("neu", "ang", "exc", "sad", "hap", "fru", "sad", "neu", "ang", "xxx", "neu", "hap"),
        strict=True,
    )
)


def make_iemocap(root: Path, sessions: int = 3) -> Path:
    """``SessionN/sentences/wav/<dialog>/<utt>.wav`` and ``SessionN/dialog/EmoEvaluation/<dialog>.txt``."""
    for n in range(1, sessions + 1):
        for dialog in (f"Ses0{n}F_impro01", f"Ses0{n}M_script01_1"):
            lines = ["% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]", ""]
            for k, (suffix, label) in enumerate(_TURNS):
                utt = f"{dialog}_{suffix}"
                _wav(root / f"Session{n}" / "sentences" / "wav" / dialog / f"{utt}.wav", k)
                lines += [f"[{k * 3.0:.4f} - {k * 3.0 + 2.5:.4f}]\t{utt}\t{label}\t[2.5000, 3.0000, 3.5000]"]
                lines += [f"C-E1:\t{label.capitalize()};\t()", ""]
            txt = root / f"Session{n}" / "dialog" / "EmoEvaluation" / f"{dialog}.txt"
            txt.parent.mkdir(parents=True, exist_ok=True)
            txt.write_text("\n".join(lines) + "\n")
    return root


def make_compare(root: Path, test_labels: bool = False) -> Path:
    """``wav/{train,devel,test}_NNNN.wav`` and ``lab/ComParE2026_Task.tsv`` (test labels withheld unless asked)."""
    rows = ["file_name\tlabel"]
    for split, n in (("train", 12), ("devel", 6), ("test", 6)):
        for i in range(1, n + 1):
            name = f"{split}_{i:04d}.wav"
            label = ("low", "high", "mid")[i % 3]
            _wav(root / "wav" / name, i % 3)
            rows.append(f"{name}\t{label if split != 'test' or test_labels else '?'}")
    (root / "lab").mkdir(parents=True, exist_ok=True)
    (root / "lab" / "ComParE2026_Task.tsv").write_text("\n".join(rows) + "\n")
    return root
