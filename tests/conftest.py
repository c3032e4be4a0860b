"""Shared fixtures: tiny generated corpora (real WAV files on disk), composed configs and an isolated MLflow store."""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
import soundfile as sf

if TYPE_CHECKING:
    from omegaconf import DictConfig

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


def _compose(overrides: Sequence[str] = ()) -> DictConfig:
    from hydra import compose, initialize_config_dir

    from paraling.cli import CONF_DIR
    from paraling.config import register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=list(overrides))


@pytest.fixture(scope="session")
def compose_cfg() -> Callable[[Sequence[str]], DictConfig]:
    """``compose_cfg(overrides)``: the packaged Hydra config composed with ``overrides``, as ``paraling train`` does."""
    return _compose


@pytest.fixture()
def tiny_cfg(tone_corpus: Path, tmp_path: Path) -> Callable[..., DictConfig]:
    """``tiny_cfg(*overrides)``: a seconds-long CPU run on :func:`tone_corpus`, with ``overrides`` applied last.

    Two folds, one epoch, a small CNN (channels 8-8-8, one 32-unit FC layer), no checkpoints, no progress bars,
    caches under ``tmp_path / "cache"``.
    """
    tiny = [
        "corpus=csv",
        f"corpus.path={tone_corpus}",
        "trainer.epochs=1",
        "cv.folds=2",
        "model.channels=[8,8,8]",
        "model.fc_sizes=[32]",
        f"cache_dir={tmp_path / 'cache'}",
        "progress=never",
        "device=cpu",
        "trainer.checkpoint=false",
    ]
    return lambda *overrides: _compose([*tiny, *overrides])
