"""RAVDESS (Livingstone & Russo, 2018): ``ROOT/Actor_NN/MM-VV-EE-II-SS-RR-AA.wav``.

The seven fields: modality (01 audio-video, 02 video, 03 audio), vocal channel (01 speech, 02 song), emotion (01
neutral, 02 calm, 03 happy, 04 sad, 05 angry, 06 fearful, 07 disgust, 08 surprised), intensity (01 normal, 02
strong), statement, repetition, actor (01-24; odd male, even female). The speech archive holds 1,440 audio-only files
(24 actors x 60); ``corpus.vocal_channel`` keeps speech (default), song or both. Protocol: 5 speaker-grouped folds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from paraling.data.manifest import Manifest, Utterance
from paraling.data.recipes.common import SkipLog
from paraling.data.recipes.standard import (
    CATALOG,
    SKIP,
    CorpusInfo,
    Parsed,
    check_counts,
    load_prepared,
    prepare,
    scan_named,
)
from paraling.errors import ConfigError, CorpusError

__all__ = ["EMOTIONS", "INFO", "load_ravdess", "prepare_ravdess"]

EMOTIONS = {
    "01": "neutral",
    "02": "calm",
    "03": "happy",
    "04": "sad",
    "05": "angry",
    "06": "fearful",
    "07": "disgust",
    "08": "surprised",
}
_CHANNELS = {"speech": {"01"}, "song": {"02"}, "both": {"01", "02"}}

INFO = CorpusInfo(
    "ravdess",
    "Ryerson Audio-Visual Database of Emotional Speech and Song (RAVDESS)",
    "https://zenodo.org/record/1188976 (Audio_Speech_Actors_01-24.zip)",
    "CC BY-NC-SA 4.0",
    tuple(EMOTIONS.values()),
    24,
    1440,
    "5 speaker-grouped folds (cv=kfold)",
)
CATALOG[INFO.name] = INFO


def _parse(stem: str, vocal_channel: str) -> Parsed:
    parts = stem.split("-")
    if len(parts) != 7 or parts[2] not in EMOTIONS or not all(p.isdigit() for p in parts):
        return None
    modality, channel, emotion, intensity, statement, repetition, actor = parts
    if channel not in _CHANNELS[vocal_channel] or modality != "03":
        return SKIP
    extra = {
        "intensity": "strong" if intensity == "02" else "normal",
        "statement": statement,
        "repetition": repetition,
        "channel": "song" if channel == "02" else "speech",
        "gender": "male" if int(actor) % 2 else "female",
    }
    return EMOTIONS[emotion], f"actor{actor}", extra


def _scan(root: Path, skips: SkipLog, on_bad_file: str, vocal_channel: str) -> list[Utterance]:
    actors = sorted(p for p in root.glob("Actor_*") if p.is_dir())
    if not actors:
        raise CorpusError(
            f"{root}: no Actor_NN/ folders; RAVDESS unpacks to ROOT/Actor_01/03-01-01-01-01-01-01.wav ...: set "
            "corpus.path to the folder that holds Actor_01 ... Actor_24"
        )
    paths = [path for folder in actors for path in sorted(folder.glob("*.wav"))]
    utts = scan_named(root, paths, lambda stem: _parse(stem, vocal_channel), "RAVDESS", on_bad_file, skips)
    check_counts(INFO, utts, complete=vocal_channel == "speech" and len(utts) == INFO.files)
    return utts


def prepare_ravdess(
    root: str | Path, out_dir: str | Path, on_bad_file: str = "skip", vocal_channel: str = "speech"
) -> Path:
    """Write RAVDESS's manifest into ``out_dir`` (audio-only files of ``vocal_channel``: speech, song or both).

    Raises:
        ConfigError: An unknown ``vocal_channel``.
        CorpusError: No ``Actor_NN`` folders, or a complete tree that is not RAVDESS's.
    """
    if vocal_channel not in _CHANNELS:
        raise ConfigError(f"corpus.vocal_channel must be one of {list(_CHANNELS)}, not {vocal_channel!r}")
    options = {"on_bad_file": on_bad_file, "vocal_channel": vocal_channel}
    return prepare("ravdess", root, out_dir, lambda r, s: _scan(r, s, on_bad_file, vocal_channel), options)


def load_ravdess(cfg: Any) -> Manifest:
    """The ``ravdess`` recipe: :func:`prepare_ravdess` into ``corpus.manifest_dir``, then the manifest."""
    return load_prepared("ravdess", cfg, prepare_ravdess, vocal_channel=str(cfg.vocal_channel))
