"""The hostile-corpus suite: each case gets its documented behaviour, never a bare traceback."""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path

import numpy as np
import pytest

from paraling.config import compose
from paraling.data.audio import load_audio
from paraling.data.recipes.csv import prepare_csv
from paraling.data.recipes.folders import prepare_folders
from paraling.errors import AudioError, CorpusError
from paraling.pipeline.experiment import run_experiment

_spec = importlib.util.spec_from_file_location("hostile_corpus", Path(__file__).parents[1] / "hostile_corpus.py")
assert _spec and _spec.loader
hostile = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(hostile)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    return hostile.make_hostile_corpus(tmp_path_factory.mktemp("hostile"), long_minutes=10.0)


def test_every_case_has_its_documented_behaviour(corpus: tuple[Path, dict[str, str]]) -> None:
    csv_path, cases = corpus
    assert set(cases) == set(hostile.BEHAVIOUR)
    root = csv_path.parent
    for case, rel in cases.items():
        path = root / rel
        if hostile.BEHAVIOUR[case] == "skip":
            with pytest.raises(AudioError) as err:
                load_audio(path, 16000)
            assert path.name in str(err.value) and "Fix:" in str(err.value)
        else:
            x = load_audio(path, 16000)
            assert x.ndim == 1 and x.dtype == np.float32 and np.isfinite(x).all() and len(x) >= 1
    assert abs(len(load_audio(root / cases["ten_minutes"], 16000)) / 16000 - 600) < 1


def test_csv_recipe_skips_and_counts(corpus: tuple[Path, dict[str, str]], caplog: pytest.LogCaptureFixture) -> None:
    csv_path, _ = corpus
    with caplog.at_level(logging.WARNING):
        m = prepare_csv(csv_path)
    header_bad = {"zero_bytes", "truncated_header", "not_audio"}  # detected from the header already
    assert len(m.skipped) == len(header_bad)  # type: ignore[attr-defined]
    assert "3 unreadable file(s) skipped" in caplog.text
    with pytest.raises(AudioError):
        prepare_csv(csv_path, on_bad_file="error")


def test_folders_recipe_reads_non_utf8_names(tmp_path: Path) -> None:
    d = tmp_path / "lab"
    d.mkdir()
    raw = os.fsencode(str(d)) + b"/s1_caf\xe9.wav"
    import soundfile as sf

    with open(raw, "wb") as fh:
        sf.write(fh, np.zeros(800, np.float32), 16000, format="WAV")
    m = prepare_folders(tmp_path, r"^(?P<speaker>s\d+)_")
    assert len(m) == 1 and load_audio(m[0].path).shape == (800,)
    m.write(tmp_path / "m.jsonl")  # must be writable JSONL
    assert "\\udce9" in (tmp_path / "m.jsonl").read_text()


@pytest.mark.slow
def test_pipeline_runs_through_the_hostile_corpus(
    corpus: tuple[Path, dict[str, str]], tmp_path: Path, mlflow_uri: str, caplog: pytest.LogCaptureFixture
) -> None:
    csv_path, _ = corpus
    cfg = compose(
        [
            "corpus=csv",
            f"corpus.path={csv_path}",
            "corpus.name=hostile",
            "cv.folds=2",
            "trainer.epochs=1",
            "progress=never",
            "model.channels=[4,4,4]",
            "model.fc_sizes=[16]",
            f"cache_dir={tmp_path / 'cache'}",
            "trainer.max_windows_per_epoch=2000",
        ]
    )
    with caplog.at_level(logging.WARNING):
        result = run_experiment(cfg)
    skipped_late = {"nan_samples", "inf_samples"}  # header fine, samples bad: skipped at feature time
    assert f"{len(skipped_late)} utterance(s) could not be decoded" in caplog.text
    n_good = 5 * 2 * 2
    expected = n_good + sum(1 for c, b in hostile.BEHAVIOUR.items() if b == "ok" and c != "non_utf8_name")
    assert len(result.oof.utt_ids) == expected
    from paraling.scoring.metrics import uar

    scored = result.oof.fold >= 0  # the headline UAR is exactly the out-of-fold scores' UAR
    assert result.uar == uar(result.oof.y[scored], result.oof.proba[scored].argmax(1), len(result.oof.classes))


def test_label_missing_speaker_missing_duplicates(tmp_path: Path) -> None:
    import soundfile as sf

    sf.write(tmp_path / "a.wav", np.zeros(800, np.float32), 16000)
    (tmp_path / "c.csv").write_text("file,label,speaker\na.wav,,s1\n")
    with pytest.raises(CorpusError, match=r"c\.csv: rows \[2\]"):
        prepare_csv(tmp_path / "c.csv")
    (tmp_path / "c.csv").write_text("file,label,speaker\na.wav,x,\n")
    with pytest.raises(CorpusError, match="lack a file, label or speaker"):
        prepare_csv(tmp_path / "c.csv")
    (tmp_path / "c.csv").write_text("file,label,speaker\na.wav,x,s\n./a.wav,y,s\n")
    with pytest.raises(CorpusError, match="listed twice"):
        prepare_csv(tmp_path / "c.csv")
