"""CSV and folder recipes, manifests and speaker-independent folds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from paraling.data.manifest import Manifest, Utterance
from paraling.data.recipes.csv import prepare_csv
from paraling.data.recipes.folders import prepare_folders
from paraling.data.splits import assign_folds, plan_folds, split_validation_speakers
from paraling.errors import AudioError, ConfigError, CorpusError


def _wav(p: Path, seconds: float = 0.3) -> None:
    p.parent.mkdir(parents=True, exist_ok=True)
    sf.write(p, np.random.default_rng(0).normal(0, 0.1, int(16000 * seconds)), 16000)


def _csv(p: Path, rows: list[str], header: str = "file,label,speaker") -> Path:
    p.write_text(header + "\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return p


def test_csv_recipe_keeps_extra_columns_and_roundtrips(tmp_path: Path) -> None:
    _wav(tmp_path / "a b.wav")
    _wav(tmp_path / "sub" / "c.wav")
    m = prepare_csv(_csv(tmp_path / "x.csv", ["a b.wav,yes,s1,7", "sub/c.wav,no,s2,9"], "file,label,speaker,age"))
    assert [u.id for u in m] == ["a b", "sub/c"]
    assert m[0].extra == {"age": "7"} and m.labels == ["no", "yes"]
    assert m[0].duration == pytest.approx(0.3, abs=0.01)
    m.write(tmp_path / "m.jsonl")
    back = Manifest.read(tmp_path / "m.jsonl")
    assert [u.to_json() for u in back] == [u.to_json() for u in m]
    assert back.digest() == m.digest()


def test_csv_missing_label_or_speaker_names_rows(tmp_path: Path) -> None:
    _wav(tmp_path / "a.wav")
    with pytest.raises(CorpusError, match=r"rows \[3\].*label or speaker"):
        prepare_csv(_csv(tmp_path / "x.csv", ["a.wav,yes,s1", "a.wav,,s2"]))


def test_csv_missing_column_duplicate_escape(tmp_path: Path) -> None:
    _wav(tmp_path / "root" / "a.wav")
    _wav(tmp_path / "outside.wav")
    root = tmp_path / "root"
    with pytest.raises(CorpusError, match="missing column"):
        prepare_csv(_csv(root / "x.csv", ["a.wav,yes"], "file,label"))
    with pytest.raises(CorpusError, match="listed twice"):
        prepare_csv(_csv(root / "x.csv", ["a.wav,yes,s1", "a.wav,no,s2"]))
    with pytest.raises(CorpusError, match="outside the corpus root"):
        prepare_csv(_csv(root / "x.csv", ["../outside.wav,yes,s1"]))
    m = prepare_csv(_csv(root / "x.csv", ["../outside.wav,yes,s1"]), allow_outside_root=True)
    assert len(m) == 1
    with pytest.raises(CorpusError, match="not found"):
        prepare_csv(_csv(root / "x.csv", ["missing.wav,yes,s1"]))


def test_csv_bad_audio_skip_or_error(tmp_path: Path) -> None:
    _wav(tmp_path / "a.wav")
    (tmp_path / "bad.wav").write_bytes(b"")
    csv = _csv(tmp_path / "x.csv", ["a.wav,yes,s1", "bad.wav,no,s2"])
    m = prepare_csv(csv, on_bad_file="skip")
    assert [u.id for u in m] == ["a"] and len(m.skipped) == 1  # type: ignore[attr-defined]
    with pytest.raises(AudioError, match="bad.wav"):
        prepare_csv(csv, on_bad_file="error")


def test_folders_recipe_with_regex_and_fallback(tmp_path: Path) -> None:
    for lab in ("Apple", "Crisp"):
        for spk in ("s1", "s2"):
            _wav(tmp_path / lab / f"{spk}_{lab}_0.wav")
    (tmp_path / "Apple" / "notes.txt").write_text("x")
    m = prepare_folders(tmp_path, r"^(?P<speaker>s\d+)_")
    assert len(m) == 4 and m.speakers == ["s1", "s2"] and m.labels == ["Apple", "Crisp"]
    m2 = prepare_folders(tmp_path)
    assert len(m2.speakers) == 4
    with pytest.raises(CorpusError, match="does not match"):
        prepare_folders(tmp_path, r"^x")
    with pytest.raises(ConfigError, match="not a valid regex"):
        prepare_folders(tmp_path, r"(")


def _manifest(n_spk: int, labels: tuple[str, ...] = ("a", "b"), per: int = 2) -> Manifest:
    return Manifest(
        Utterance(f"s{s}_{lab}_{k}", f"/x/{s}_{lab}_{k}.wav", lab, f"s{s}", 1.0)
        for s in range(n_spk)
        for lab in labels
        for k in range(per)
    )


@pytest.mark.parametrize("scheme", ["kfold", "loso"])
def test_folds_are_speaker_disjoint_and_deterministic(scheme: str) -> None:
    m = _manifest(10)
    folds = assign_folds(m, scheme, 5, seed=3)
    assert folds == assign_folds(m, scheme, 5, seed=3)
    by_spk: dict[str, set[int]] = {}
    for u in m:
        by_spk.setdefault(u.speaker, set()).add(folds[u.id])
    assert all(len(v) == 1 for v in by_spk.values())
    n = 5 if scheme == "kfold" else 10
    assert set(folds.values()) == set(range(n))
    plans = plan_folds(m.with_folds(folds))
    assert len(plans) == n
    for p in plans:
        tr = {m[i].speaker for i in p.train}
        te = {m[i].speaker for i in p.test}
        assert not tr & te
        assert len(p.train) + len(p.test) == len(m)


def test_fewer_speakers_than_folds() -> None:
    with pytest.raises(CorpusError, match=r"3 speaker\(s\) but cv.folds=5"):
        assign_folds(_manifest(3), "kfold", 5)


def test_fixed_split_and_augmented_copies_train_only() -> None:
    base = list(_manifest(4))
    utts = [
        Utterance(u.id, u.path, u.label, u.speaker, 1.0, split="test" if u.speaker == "s0" else "train") for u in base
    ]
    utts.append(Utterance("aug", "/x/a.wav", "a", "s0", 1.0, augmented_from=utts[0].id))
    m = Manifest(utts)
    folds = assign_folds(m, "split")
    assert "aug" not in folds
    plans = plan_folds(m.with_folds(folds))
    assert len(plans) == 1
    test_ids = {m[i].id for i in plans[0].test}
    assert "aug" not in test_ids and all(m[i].speaker == "s0" for i in plans[0].test)
    assert "aug" not in {m[i].id for i in plans[0].train}  # its source is a test utterance


def test_validation_speakers_fraction() -> None:
    spk = np.array([f"s{i % 10}" for i in range(100)])
    mask = split_validation_speakers(spk, np.zeros(100), 0.2, seed=1)
    assert len(set(spk[mask])) == 2 and not set(spk[mask]) & set(spk[~mask])
    with pytest.raises(CorpusError):
        split_validation_speakers(np.array(["a", "a"]), np.zeros(2), 0.2, 0)


def test_duplicate_ids_rejected() -> None:
    u = Utterance("x", "/x.wav", "a", "s", 1.0)
    with pytest.raises(CorpusError, match="duplicate"):
        Manifest([u, u])
