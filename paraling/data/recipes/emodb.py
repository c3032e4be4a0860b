"""Berlin EmoDB (Burkhardt et al., 2005): ``ROOT/wav/03a01Fa.wav``.

The name holds the speaker (``03``), the text (``a01``), the emotion letter (German initials: W anger, L boredom,
E disgust, A fear, F happiness, T sadness, N neutral) and a version letter. 535 utterances, 10 speakers (5 female, 5
male), 7 classes; the literature's protocol is leave-one-speaker-out (``corpus=emodb`` sets ``cv=loso``).
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

__all__ = ["EMOTIONS", "INFO", "load_emodb", "prepare_emodb"]

EMOTIONS = {
    "W": "anger",
    "L": "boredom",
    "E": "disgust",
    "A": "fear",
    "F": "happiness",
    "T": "sadness",
    "N": "neutral",
}
_FEMALE = {"08", "09", "13", "14", "16"}
_NAME = re.compile(r"^(?P<speaker>\d\d)(?P<text>[a-z]\d\d)(?P<emotion>[A-Z])(?P<version>[a-z])$")

INFO = CorpusInfo(
    "emodb",
    "Berlin Database of Emotional Speech (EmoDB)",
    "http://emodb.bilderbar.info (download, unpack: wav/)",
    "free for research",
    tuple(sorted(EMOTIONS.values())),
    10,
    535,
    "leave-one-speaker-out (cv=loso)",
)
CATALOG[INFO.name] = INFO


def _parse(stem: str) -> Parsed:
    m = _NAME.match(stem)
    if m is None or m["emotion"] not in EMOTIONS:
        return None
    extra = {"text": m["text"], "gender": "female" if m["speaker"] in _FEMALE else "male"}
    return EMOTIONS[m["emotion"]], m["speaker"], extra


def _scan(root: Path, skips: SkipLog, on_bad_file: str) -> list[Utterance]:
    wav = root / "wav"
    if not wav.is_dir():
        raise CorpusError(
            f"{root}: no wav/ folder; EmoDB unpacks to ROOT/wav/03a01Fa.wav ...: set corpus.path to the folder that "
            "holds wav/"
        )
    utts = scan_named(wav, sorted(wav.glob("*.wav")), _parse, "EmoDB", on_bad_file, skips)
    check_counts(INFO, utts, complete=len(utts) == INFO.files)
    return utts


def prepare_emodb(root: str | Path, out_dir: str | Path, on_bad_file: str = "skip") -> Path:
    """Write EmoDB's manifest into ``out_dir`` (nothing is done when a finished one of the same files is there).

    Returns:
        The path of ``manifest.jsonl``.

    Raises:
        CorpusError: No ``wav/`` folder, or a complete tree whose classes or speakers differ from EmoDB's.
    """
    return prepare("emodb", root, out_dir, lambda r, s: _scan(r, s, on_bad_file), {"on_bad_file": on_bad_file}, ["wav"])


def load_emodb(cfg: Any) -> Manifest:
    """The ``emodb`` recipe: :func:`prepare_emodb` into ``corpus.manifest_dir``, then the manifest."""
    return load_prepared("emodb", cfg, prepare_emodb)
