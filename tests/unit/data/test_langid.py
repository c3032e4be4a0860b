"""The synthetic language-ID corpus: same speakers in every language, held-out val speakers, determinism."""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from paraling.data.recipes import langid
from paraling.data.recipes.langid import LANGUAGES, prepare_langid
from paraling.errors import ConfigError, CorpusError

TINY = {"n_speakers": 3, "utts_per_language": 1}


def _rows(csv_path: Path) -> list[dict[str, str]]:
    with open(csv_path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return prepare_langid(tmp_path_factory.mktemp("langid") / "corpus", **TINY)


def test_layout(tiny: Path) -> None:
    assert tiny.name == "langid.csv"
    rows = _rows(tiny)
    assert list(rows[0]) == ["file", "label", "speaker", "split", "language", "sentence", "voice"]
    assert len(rows) == 3 * 7
    assert {r["label"] for r in rows} == set(LANGUAGES) and len(LANGUAGES) == 7
    for r in rows:
        info = sf.info(str(tiny.parent / r["file"]))
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
        assert 0.8 < info.duration < 5.0
        assert r["voice"].startswith(LANGUAGES[r["label"]] + "+")


def test_same_speakers_speak_every_language(tiny: Path) -> None:
    languages, variants = defaultdict(set), defaultdict(set)
    for r in _rows(tiny):
        languages[r["speaker"]].add(r["label"])
        variants[r["speaker"]].add(r["voice"].split("+", 1)[1])
    assert len(languages) == 3
    assert all(langs == set(LANGUAGES) for langs in languages.values())
    assert all(len(v) == 1 for v in variants.values())  # one voice variant per speaker, whatever the language
    assert len({next(iter(v)) for v in variants.values()}) == 3


def test_val_speakers_are_held_out(tiny: Path) -> None:
    split_of = defaultdict(set)
    for r in _rows(tiny):
        split_of[r["speaker"]].add(r["split"])
    assert all(len(s) == 1 for s in split_of.values())  # a speaker is entirely train or entirely test
    splits = [next(iter(s)) for s in split_of.values()]
    assert splits.count("test") == 1 and splits.count("train") == 2


def test_telephone_band(tiny: Path) -> None:
    wave, sr = sf.read(str(tiny.parent / _rows(tiny)[0]["file"]), dtype="float32")
    spec = np.abs(np.fft.rfft(wave)) ** 2
    f = np.fft.rfftfreq(wave.size, 1 / sr)
    assert spec[(f > 300) & (f < 3400)].sum() / spec.sum() > 0.7


def test_deterministic(tiny: Path, tmp_path: Path) -> None:
    assert _snapshot(prepare_langid(tmp_path / "again", **TINY).parent) == _snapshot(tiny.parent)
    other = _snapshot(prepare_langid(tmp_path / "other", seed=3, **TINY).parent)
    assert other["langid.csv"] != _snapshot(tiny.parent)["langid.csv"]


def test_skips_when_complete(tiny: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*_: object) -> np.ndarray:
        raise AssertionError("must not render again")

    monkeypatch.setattr(langid, "_render", boom)
    assert prepare_langid(tiny.parent, **TINY) == tiny


def test_parameter_mismatch(tiny: Path) -> None:
    with pytest.raises(CorpusError, match=r"utts_per_language: 1 -> 2.*another --out or delete"):
        prepare_langid(tiny.parent, n_speakers=3, utts_per_language=2)


@pytest.mark.parametrize(
    "kwargs",
    [{"n_speakers": 1}, {"utts_per_language": 0}, {"n_val_speakers": 3}, {"seed": -2}, {"sample_rate": 4000}],
)
def test_invalid_arguments(tmp_path: Path, kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        prepare_langid(tmp_path / "x", **{**TINY, **kwargs})


def test_split_scheme_tests_on_the_held_out_speakers(tiny: Path) -> None:
    from paraling.data.recipes.csv import prepare_csv
    from paraling.data.splits import assign_folds

    manifest = prepare_csv(tiny)
    folds = assign_folds(manifest, "split", 5, True, 0)
    held_out = {r["speaker"] for r in _rows(tiny) if r["split"] == "test"}
    assert {u.speaker for u in manifest if folds[u.id] == 0} == held_out
    assert {u.speaker for u in manifest if folds[u.id] == -1}.isdisjoint(held_out)
