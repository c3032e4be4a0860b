"""Same seed, same config, same machine ⇒ same folds, windows and metrics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from paraling.config import ParalingConfig
from paraling.pipeline.experiment import run_experiment


def _cfg(csv: Path, cache: Path, seed: int) -> object:
    cfg = OmegaConf.structured(ParalingConfig())
    cfg.corpus.kind, cfg.corpus.path, cfg.cache_dir, cfg.seed = "csv", str(csv), str(cache), seed
    cfg.cv.folds, cfg.trainer.epochs, cfg.progress, cfg.tracking.enabled = 2, 2, "never", False
    cfg.model.channels, cfg.model.fc_sizes, cfg.trainer.checkpoint = [8, 8, 8], [32], False
    return cfg


def test_same_seed_same_results(tone_corpus: Path, tmp_path: Path) -> None:
    a = run_experiment(_cfg(tone_corpus, tmp_path / "c", 7))
    b = run_experiment(_cfg(tone_corpus, tmp_path / "c", 7))
    np.testing.assert_array_equal(a.oof.fold, b.oof.fold)
    np.testing.assert_array_equal(a.oof.windows["window_start"], b.oof.windows["window_start"])
    np.testing.assert_allclose(a.oof.proba, b.oof.proba, atol=1e-5)
    assert a.uar == b.uar
    c = run_experiment(_cfg(tone_corpus, tmp_path / "c", 8))
    assert not np.allclose(a.oof.proba, c.oof.proba, atol=1e-3)
