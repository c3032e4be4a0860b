"""Baselines: features (cached), estimators, and runs on the CNN's folds with the same metrics and oof format."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig

from paraling.ensemble import check_aligned
from paraling.errors import AudioError, ConfigError
from paraling.features.functionals import ComParEFunctionals, utterance_features
from paraling.models.baselines import DropoutDNN, GroupedGridClassifier
from paraling.pipeline.experiment import run_experiment
from paraling.report.summary import print_summary


def _blobs(n_per: int = 12, n_cls: int = 3, dim: int = 6, seed: int = 0) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(n_cls), n_per)
    X = rng.normal(size=(len(y), dim)) + 3.0 * np.eye(n_cls, dim)[y]
    groups = np.tile(np.arange(6), len(y) // 6 + 1)[: len(y)]
    return X, y, groups


def test_grouped_svm_picks_c_from_the_grid_and_gives_probabilities() -> None:
    X, y, g = _blobs()
    clf = GroupedGridClassifier("svm", Cs=(0.001, 0.1, 1.0), inner_folds=3).fit(X, y, g)
    assert clf.C_ in (0.001, 0.1, 1.0) and set(clf.cv_scores_) == {0.001, 0.1, 1.0}
    p = clf.predict_proba(X)
    assert p.shape == (len(y), 3) and np.allclose(p.sum(1), 1.0)
    assert (clf.predict(X) == y).mean() > 0.9
    lr = GroupedGridClassifier("lr", Cs=(0.01, 1.0)).fit(X, y, g)
    assert (lr.predict(X) == y).mean() > 0.9 and np.allclose(lr.predict_proba(X).sum(1), 1.0)
    with pytest.raises(ConfigError, match="Cs must be"):
        GroupedGridClassifier("svm", Cs=()).fit(X, y, g)
    with pytest.raises(ConfigError, match="kind must be"):
        GroupedGridClassifier("knn").fit(X, y, g)


def test_dropout_dnn_learns_and_selects_an_epoch() -> None:
    X, y, g = _blobs(n_per=20)
    dnn = DropoutDNN(hidden=(16, 16, 16), dropout=0.2, epochs=30, lr=0.01, batch_size=16).fit(X, y, g)
    assert (dnn.predict(X) == y).mean() > 0.8
    assert 0 <= dnn.best_epoch_ < 30 and len(dnn.history_) == 30 and "val_uar" in dnn.history_[0]
    assert np.allclose(dnn.predict_proba(X).sum(1), 1.0)
    with pytest.raises(ConfigError, match="dropout"):
        DropoutDNN(dropout=1.0).fit(X, y, g)


def test_compare_functionals_are_cached_per_file(tone_corpus: Path, tmp_path: Path) -> None:
    wav = sorted((tone_corpus.parent / "wav").glob("*.wav"))[:2]
    ext = ComParEFunctionals(tmp_path / "cache")
    X = ext.get_many(wav)
    assert X.shape == (2, 6373) and X.dtype == np.float32 and np.isfinite(X).all()
    assert (ext.hits, ext.misses) == (0, 2)
    again = ComParEFunctionals(tmp_path / "cache")
    np.testing.assert_array_equal(again.get_many(wav), X)
    assert (again.hits, again.misses) == (2, 0)
    copy = tmp_path / "copy.wav"
    shutil.copy(wav[0], copy)
    assert again.key(copy) == again.key(wav[0]) != again.key(wav[1])  # keyed by content, not by path


def test_logmel_stats_use_the_feature_cache(
    tone_corpus: Path, tmp_path: Path, tiny_cfg: Callable[..., DictConfig]
) -> None:
    cfg = tiny_cfg()
    wav = sorted((tone_corpus.parent / "wav").glob("*.wav"))[:3]
    X, ok = utterance_features("logmel", wav, cfg)
    assert X.shape == (3, 2 * int(cfg.features.n_mels)) and ok.all()
    assert any((tmp_path / "cache" / "features").rglob("*.npy"))
    with pytest.raises(ConfigError, match="features"):
        utterance_features("mfcc", wav, cfg)


def test_baselines_share_the_cnn_folds_metrics_and_oof_format(
    mlflow_uri: str, capsys: pytest.CaptureFixture[str], tiny_cfg: Callable[..., DictConfig]
) -> None:
    cnn = run_experiment(tiny_cfg("name=cnn"))
    runs = {"cnn": cnn}
    for name, extra in [
        ("svm", ["model=svm"]),
        ("rf", ["model=rf", "model.baseline.rf_trees=20"]),
        ("dnn", ["model=dnn", "model.baseline.dnn_epochs=5", "model.baseline.features=logmel"]),
    ]:
        cfg = tiny_cfg(f"name={name}", *extra)
        runs[name] = run_experiment(cfg)
        print_summary(runs[name], cfg)
    assert "svm baseline" in capsys.readouterr().out
    check_aligned([r.oof.sorted() for r in runs.values()], list(runs))
    client = MlflowClient()
    tags = {k: client.get_run(r.run_id).data.tags for k, r in runs.items()}
    assert {k: t["paraling.model_type"] for k, t in tags.items()} == {k: k for k in runs}
    assert len({t["paraling.fold_digest"] for t in tags.values()}) == 1
    summary_keys = {k for k in cnn.metrics if not k.startswith("uar_") or k[4:] in ("fold_mean", "fold_std")}
    for name in ("svm", "rf", "dnn"):
        assert summary_keys - {"uar_majority", "uar_mean", "uar_logmean", "uar_weighted"} <= set(runs[name].metrics)
        files = {f.path for f in client.list_artifacts(runs[name].run_id, "oof")}
        assert "oof/scores.npz" in files
    assert tags["svm"]["paraling.features"] == "compare" and tags["dnn"]["paraling.features"] == "logmel"
    assert runs["svm"].uar > 0.5  # the tone classes are easy for ComParE functionals


def test_logistic_regression_on_cnn_embeddings(mlflow_uri: str, tiny_cfg: Callable[..., DictConfig]) -> None:
    cnn = run_experiment(tiny_cfg("name=cnn", "trainer.epochs=2"))
    for level in ("utterance", "window"):
        lr = run_experiment(
            tiny_cfg(
                "model=lr_emb", f"model.baseline.embedding_run={cnn.run_id}", f"model.baseline.embedding_level={level}"
            )
        )
        check_aligned([cnn.oof.sorted(), lr.oof.sorted()], ["cnn", "lr"])
        tags = MlflowClient().get_run(lr.run_id).data.tags
        assert tags["paraling.model_type"] == "lr" and tags["paraling.embedding_run"] == cnn.run_id
        assert lr.uar > 1 / 3 + 0.1 and set(lr.fold_uars) == {0, 1}  # it learns: well above chance (3 classes)
    with pytest.raises(ConfigError, match="other utterances, classes or folds"):
        run_experiment(tiny_cfg("model=lr_emb", f"model.baseline.embedding_run={cnn.run_id}", "cv.folds=3"))


def test_embeddings_need_a_run(mlflow_uri: str, tiny_cfg: Callable[..., DictConfig]) -> None:
    with pytest.raises(ConfigError, match="embedding_run"):
        run_experiment(tiny_cfg("model=lr_emb"))


def test_undecodable_files_are_skipped_like_the_cnn_skips_them(
    mlflow_uri: str, monkeypatch: pytest.MonkeyPatch, tiny_cfg: Callable[..., DictConfig]
) -> None:
    real = ComParEFunctionals.get

    def get(self: ComParEFunctionals, path: str | Path) -> np.ndarray:
        if Path(path).name == "s0_low_0.wav":
            raise AudioError(path, "cannot be decoded as audio (test).")
        return real(self, path)

    monkeypatch.setattr(ComParEFunctionals, "get", get)
    run = run_experiment(tiny_cfg("model=svm", "corpus.on_bad_file=skip"))
    assert len(run.oof.utt_ids) == 35 and "wav/s0_low_0" not in set(run.oof.utt_ids.tolist())
    with pytest.raises(AudioError, match="test"):
        run_experiment(tiny_cfg("model=svm", "corpus.on_bad_file=error"))
