"""Same seed, same config, same machine ⇒ same folds, windows and metrics."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from paraling.config import compose
from paraling.pipeline.experiment import run_experiment


def _cfg(csv: Path, cache: Path, seed: int) -> object:
    return compose(
        [
            "corpus=csv",
            f"corpus.path={csv}",
            f"cache_dir={cache}",
            f"seed={seed}",
            "cv.folds=2",
            "trainer.epochs=2",
            "progress=never",
            "tracking=none",
            "model.channels=[8,8,8]",
            "model.fc_sizes=[32]",
            "trainer.checkpoint=false",
        ]
    )


def test_same_seed_same_results(tone_corpus: Path, tmp_path: Path) -> None:
    a = run_experiment(_cfg(tone_corpus, tmp_path / "c", 7))
    b = run_experiment(_cfg(tone_corpus, tmp_path / "c", 7))
    np.testing.assert_array_equal(a.oof.fold, b.oof.fold)
    np.testing.assert_array_equal(a.oof.windows["window_start"], b.oof.windows["window_start"])
    np.testing.assert_allclose(a.oof.proba, b.oof.proba, atol=1e-5)
    assert a.uar == b.uar
    c = run_experiment(_cfg(tone_corpus, tmp_path / "c", 8))
    assert not np.allclose(a.oof.proba, c.oof.proba, atol=1e-3)
