"""Tests of paraling.scoring.metrics against scikit-learn and hand-computed values."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from sklearn.metrics import confusion_matrix as sk_confusion_matrix
from sklearn.metrics import recall_score

from paraling.errors import ConfigError
from paraling.scoring import metrics
from paraling.tracking import plots


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_uar_matches_sklearn_macro_recall(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_classes = int(rng.integers(2, 8))
    y_true = rng.integers(0, n_classes, size=int(rng.integers(5, 300)))
    y_pred = np.where(rng.random(len(y_true)) < 0.5, y_true, rng.integers(0, n_classes, size=len(y_true)))
    expected = recall_score(y_true, y_pred, labels=np.unique(y_true), average="macro")
    assert metrics.uar(y_true, y_pred) == pytest.approx(expected)
    assert metrics.uar(y_true, y_pred, n_classes=n_classes) == pytest.approx(expected)


def test_uar_ignores_classes_absent_from_truth() -> None:
    y_true = np.array([0, 0, 1, 1])
    y_pred = np.array([0, 2, 1, 1])  # class 2 predicted but never true
    assert metrics.uar(y_true, y_pred, n_classes=3) == pytest.approx(0.75)


def test_uar_known_value_and_accuracy() -> None:
    y_true = np.array([0, 0, 0, 0, 1])
    y_pred = np.array([0, 0, 0, 0, 0])
    assert metrics.uar(y_true, y_pred) == pytest.approx(0.5)
    assert metrics.accuracy(y_true, y_pred) == pytest.approx(0.8)


def test_uar_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        metrics.uar([0, 1], [0])
    with pytest.raises(ValueError, match="empty"):
        metrics.uar([], [])
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        metrics.uar([0, 2], [0, 1], n_classes=2)
    with pytest.raises(ConfigError, match="n_classes=0"):
        metrics.uar([0, 1], [0, 1], n_classes=0)
    with pytest.raises(ValueError, match=">= 0"):
        metrics.uar([0, -1], [0, 1])


def test_confusion_matrix_matches_sklearn() -> None:
    rng = np.random.default_rng(7)
    y_true = rng.integers(0, 4, size=200)
    y_pred = rng.integers(0, 4, size=200)
    cm = metrics.confusion_matrix(y_true, y_pred, n_classes=5)
    assert cm.shape == (5, 5)
    assert cm.dtype == np.int64
    np.testing.assert_array_equal(cm, sk_confusion_matrix(y_true, y_pred, labels=range(5)))
    assert cm.sum() == 200
    # UAR is the mean of the diagonal over row sums of present classes
    rows = cm.sum(axis=1)
    assert metrics.uar(y_true, y_pred) == pytest.approx(np.mean(np.diag(cm)[rows > 0] / rows[rows > 0]))


def test_per_speaker_uar() -> None:
    y_true = np.array([0, 1, 0, 1, 0, 1])
    y_pred = np.array([0, 1, 1, 1, 0, 0])
    speakers = np.array(["a", "a", "b", "b", "c", "c"])
    out = metrics.per_speaker_uar(y_true, y_pred, speakers)
    assert out == {"a": pytest.approx(1.0), "b": pytest.approx(0.5), "c": pytest.approx(0.5)}
    # a speaker with one class only: UAR over that class
    assert metrics.per_speaker_uar([0, 0], [0, 1], [3, 3]) == {"3": pytest.approx(0.5)}


def test_binary_uar_collapses_to_two_classes() -> None:
    # class 2 = No_Food; 0 and 1 are foods
    y_true = np.array([0, 1, 2, 2])
    y_pred = np.array([1, 0, 2, 0])  # food confusions do not matter; one No_Food predicted as food
    assert metrics.binary_uar(y_true, y_pred, negative_class=2) == pytest.approx((1.0 + 0.5) / 2)
    assert metrics.uar(y_true, y_pred) == pytest.approx(0.5 / 3)
    with pytest.raises(ConfigError, match="negative_class=-1"):
        metrics.binary_uar(y_true, y_pred, negative_class=-1)


def test_fold_summary_uses_population_std() -> None:
    out = metrics.fold_summary([0.5, 0.7])
    assert out["mean"] == pytest.approx(0.6)
    assert out["std"] == pytest.approx(0.1)
    assert metrics.fold_summary([0.3]) == {"mean": pytest.approx(0.3), "std": 0.0}
    with pytest.raises(ValueError):
        metrics.fold_summary([])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bootstrap_ci_contains_point_estimate(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, 3, size=150)
    y_pred = np.where(rng.random(150) < 0.6, y_true, rng.integers(0, 3, size=150))
    lo, hi = metrics.bootstrap_ci(y_true, y_pred, n_boot=500, seed=seed)
    point = metrics.uar(y_true, y_pred)
    assert 0.0 <= lo <= point <= hi <= 1.0
    assert hi - lo > 0.0
    assert metrics.bootstrap_ci(y_true, y_pred, n_boot=500, seed=seed) == (lo, hi)  # deterministic


def test_bootstrap_ci_chunking_is_consistent(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(3)
    y_true = rng.integers(0, 3, size=100)
    y_pred = rng.integers(0, 3, size=100)
    full = metrics.bootstrap_ci(y_true, y_pred, n_boot=50, seed=1)
    perfect = metrics.bootstrap_ci(y_true, y_true, n_boot=50, seed=1)
    assert perfect == (1.0, 1.0)
    monkeypatch.setattr(metrics, "_BOOT_CHUNK", 100 * 7)  # 7 resamples per chunk
    chunked = metrics.bootstrap_ci(y_true, y_pred, n_boot=50, seed=1)
    assert chunked == full  # the same resamples, drawn and scored in chunks


def test_bootstrap_ci_rejects_bad_params() -> None:
    with pytest.raises(ConfigError, match="n_boot=0"):
        metrics.bootstrap_ci([0, 1], [0, 1], n_boot=0)
    with pytest.raises(ConfigError, match=r"alpha=1\.5"):
        metrics.bootstrap_ci([0, 1], [0, 1], alpha=1.5)


def test_summarize_flat_keys() -> None:
    rng = np.random.default_rng(0)
    n = 120
    y_true = rng.integers(0, 3, size=n)
    y_pred = np.where(rng.random(n) < 0.7, y_true, rng.integers(0, 3, size=n))
    fold = np.repeat([0, 1, 2, -1], n // 4)
    speakers = np.repeat(np.arange(12), n // 12)
    out = metrics.summarize(y_true, y_pred, fold, speakers, 3, n_boot=200, negative_class=2)
    expected = {
        "uar",
        "accuracy",
        "wa",
        "macro_f1",
        "uar_ci_low",
        "uar_ci_high",
        "uar_fold0",
        "uar_fold1",
        "uar_fold2",
        "uar_fold_mean",
        "uar_fold_std",
        "uar_speaker_mean",
        "uar_speaker_std",
        "uar_binary",
    }
    assert set(out) == expected
    assert all(isinstance(v, float) for v in out.values())
    scored = fold >= 0
    assert out["uar"] == pytest.approx(metrics.uar(y_true[scored], y_pred[scored]))
    per_fold = [metrics.uar(y_true[fold == k], y_pred[fold == k]) for k in range(3)]
    assert out["uar_fold1"] == pytest.approx(per_fold[1])
    assert out["uar_fold_mean"] == pytest.approx(np.mean(per_fold))
    assert out["uar_fold_std"] == pytest.approx(np.std(per_fold))
    assert out["uar_ci_low"] <= out["uar"] <= out["uar_ci_high"]


def test_summarize_without_folds_or_speakers() -> None:
    out = metrics.summarize([0, 1, 1, 0], [0, 1, 0, 0], n_boot=20)
    assert out["uar_fold0"] == out["uar"] == out["uar_fold_mean"]
    assert out["uar_fold_std"] == 0.0
    assert "uar_speaker_mean" not in out


def test_plot_confusion_matrix_writes_png(tmp_path) -> None:
    cm = np.array([[5, 1, 0], [2, 3, 1], [0, 0, 0]])
    path = plots.plot_confusion_matrix(cm, ["a", "b", "c"], tmp_path / "sub" / "cm.png", title="test")
    assert path.exists()
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in path.parent.iterdir()] == ["cm.png"]  # no temp file left behind
    with pytest.raises(ValueError, match="class_names"):
        plots.plot_confusion_matrix(cm, ["a", "b"], tmp_path / "x.png")


def test_metrics_does_not_import_torch() -> None:
    code = "import sys, paraling.scoring.metrics; sys.exit(1 if 'torch' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_macro_f1_matches_scikit_learn_and_counts_predicted_but_absent_classes() -> None:
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(3)
    for _ in range(50):
        n = int(rng.integers(2, 6))
        y_true, y_pred = rng.integers(0, n, 40), rng.integers(0, n, 40)
        assert metrics.macro_f1(y_true, y_pred, n) == pytest.approx(f1_score(y_true, y_pred, average="macro"))
    assert metrics.macro_f1([0, 0, 1], [0, 0, 2], 3) == pytest.approx((1.0 + 0.0 + 0.0) / 3)
