"""Shared fixtures: tiny generated corpora (real WAV files on disk) and an isolated MLflow store."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

SR = 16000


def make_tone_corpus(
    root: Path,
    n_speakers: int = 6,
    classes: tuple[str, ...] = ("low", "high", "noise"),
    per_class: int = 2,
    seconds: float = 0.6,
    seed: int = 0,
    sample_rate: int = SR,
) -> Path:
    """Write a small learnable corpus: class = spectral content, speaker = gain/pitch offset. Returns the CSV."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    (root / "wav").mkdir(exist_ok=True)
    rows = []
    n = int(seconds * sample_rate)
    t = np.arange(n) / sample_rate
    for s in range(n_speakers):
        f0 = 150 + 25 * s
        gain = 0.1 + 0.05 * s
        for label in classes:
            for k in range(per_class):
                if label == "noise":
                    x = rng.normal(0, 0.3, n)
                else:
                    f = f0 * (1 if label == "low" else 8) * (1 + 0.02 * k)
                    x = np.sin(2 * np.pi * f * t) + 0.5 * np.sin(4 * np.pi * f * t)
                    x += rng.normal(0, 0.05, n)
                x = (gain * x / np.max(np.abs(x))).astype(np.float32)
                name = f"wav/s{s}_{label}_{k}.wav"
                sf.write(root / name, x, sample_rate, subtype="PCM_16")
                rows.append({"file": name, "label": label, "speaker": f"spk{s}"})
    csv_path = root / "corpus.csv"
    with open(csv_path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["file", "label", "speaker"])
        w.writeheader()
        w.writerows(rows)
    return csv_path


@pytest.fixture(scope="session")
def tone_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """CSV path of a 6-speaker, 3-class, 36-utterance corpus shared by the session (do not modify)."""
    return make_tone_corpus(tmp_path_factory.mktemp("tone"))


@pytest.fixture()
def mlflow_uri(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh SQLite MLflow store for one test (also exported as MLFLOW_TRACKING_URI)."""
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    (tmp_path / "mlruns").mkdir()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


@pytest.fixture(autouse=True)
def _quiet_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", os.environ.get("CI", "1"))
    monkeypatch.setenv("GIT_PYTHON_REFRESH", "quiet")


@pytest.fixture(scope="session")
def make_corpus():
    """The :func:`make_tone_corpus` factory, for tests that need their own corpus variant."""
    return make_tone_corpus
