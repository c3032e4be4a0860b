"""Run an utterance-level baseline as one tracked, cross-validated experiment.

``paraling train model=svm|rf|dnn|lr ...`` (or ``experiment=net0``) reaches :func:`run_baseline` through
:func:`paraling.pipeline.experiment.run_experiment`. The corpus is loaded and split with the CNN's own call,
:func:`~paraling.data.splits.assign_cv_folds` (same ``cv`` settings and ``seed`` ⇒ the same speaker folds; the run's
``paraling.fold_digest`` tag equals that of a CNN run without augmentation), features come from
:mod:`paraling.features.functionals` (or per fold from a CNN run's embeddings,
:mod:`paraling.pipeline.embeddings_lr`), and per fold the estimator of :mod:`paraling.models.baselines` is fitted on
the training speakers (its model selection is grouped by speaker inside the training fold) and scores the fold's
held-out utterances.

The MLflow run carries the same metrics (:func:`paraling.scoring.metrics.summarize`: ``uar``, ``uar_fold<k>``,
``uar_fold_mean``/``std``, ``uar_binary`` with ``corpus.negative_class``, ...), the same ``oof/scores.npz``
(:mod:`paraling.scoring.oof`, without window arrays) and the tags ``paraling.model_type`` (``svm``, ``rf``, ``dnn``,
``lr``) and ``paraling.features``, so baselines enter ``paraling ensemble`` and ``paraling report`` like CNN runs.
Augmentation (``augment=pitch``) applies to the CNN only and is ignored here with a warning.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig

from paraling.data.manifest import Manifest
from paraling.data.recipes import load_corpus
from paraling.data.splits import FoldPlan, assign_cv_folds
from paraling.features.functionals import baseline_features, utterance_features
from paraling.models import build_estimator
from paraling.pipeline.cv import CVData, FoldOutput, run_cv, seed_everything
from paraling.pipeline.results import RunResult
from paraling.progress import Progress
from paraling.tracking.runs import ENCODER_TAG
from paraling.tracking.tracker import RunTracker

__all__ = ["BaselineRunner", "FoldData", "prepare_folds", "run_baseline"]

log = logging.getLogger(__name__)

#: ``(X_train, y_train, speakers_train, X_test, test_utt)``: ``test_utt`` maps rows of ``X_test`` to positions in
#: ``plan.test`` (``None`` = one row per test utterance, in order).
FoldData = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]


def prepare_folds(cfg: DictConfig) -> tuple[Manifest, list[str], np.ndarray]:
    """Load the corpus and assign the CNN's speaker folds; returns ``(manifest, classes, y)``."""
    manifest = load_corpus(cfg.corpus)
    manifest = assign_cv_folds(manifest, cfg.cv, int(cfg.seed))
    classes = manifest.labels
    index = {c: i for i, c in enumerate(classes)}
    return manifest, classes, np.array([index[u.label] for u in manifest], dtype=np.int64)


def _static_provider(X: np.ndarray, y: np.ndarray, speakers: np.ndarray) -> Callable[[FoldPlan], FoldData]:
    def fold(plan: FoldPlan) -> FoldData:
        return X[plan.train], y[plan.train], speakers[plan.train], X[plan.test], None

    return fold


def _fit(est: Any, X: np.ndarray, y: np.ndarray, groups: np.ndarray) -> Any:
    if "groups" in inspect.signature(est.fit).parameters:
        return est.fit(X, y, groups=groups)
    return est.fit(X, y)


def _fold_proba(est: Any, X_test: np.ndarray, test_utt: np.ndarray | None, n_test: int, n_cls: int) -> np.ndarray:
    """Estimator probabilities mapped to all classes (a class unseen in training gets 0) and pooled per utterance."""
    p = np.zeros((len(X_test), n_cls), np.float64)
    p[:, np.asarray(est.classes_, dtype=np.int64)] = est.predict_proba(X_test)
    if test_utt is None:
        return p
    out = np.zeros((n_test, n_cls), np.float64)
    np.add.at(out, test_utt, p)
    counts = np.bincount(test_utt, minlength=n_test)[:, None]
    return np.divide(out, counts, out=np.full_like(out, 1.0 / n_cls), where=counts > 0)


def _fold_metrics(est: Any) -> dict[str, float]:
    out = {}
    if hasattr(est, "C_"):
        out["C"] = float(est.C_)
    if hasattr(est, "best_epoch_"):
        out["best_epoch"] = float(est.best_epoch_)
    return out


class BaselineRunner:
    """Cross-validates the utterance-level model ``cfg.model.kind`` on the CNN's speaker folds.

    Args:
        cfg: Validated configuration with ``model.kind`` in ``svm``, ``rf``, ``dnn``, ``lr``.
        progress: Progress bars.
    """

    methods: tuple[str, ...] = ("utterance",)
    primary = "utterance"
    embedding_dim = 0

    def __init__(self, cfg: DictConfig, progress: Progress) -> None:
        self.cfg, self.progress = cfg, progress
        self.name, self.kind = str(cfg.model.kind), baseline_features(cfg)
        self.provider: Callable[[FoldPlan], FoldData] | None = None

    def prepare(self) -> CVData:
        """Corpus with folds and the feature vectors (or a CNN run's embeddings, fold by fold)."""
        manifest, classes, y = prepare_folds(self.cfg)
        speakers = np.array([u.speaker for u in manifest])
        tags = {"paraling.training.device": "cpu", "paraling.model_type": self.name, "paraling.features": self.kind}
        if self.kind == "embeddings":
            from paraling.pipeline.embeddings_lr import CNNEmbeddings

            emb = CNNEmbeddings(self.cfg, manifest, classes)
            self.provider = emb.fold
            tags["paraling.embedding_run"] = str(emb.run_id)
        else:
            tags |= _encoder_tags(self.cfg, self.kind)
            bar = self.progress.bar(len(manifest), f"{self.kind} features")
            X, ok = utterance_features(self.kind, [u.path for u in manifest], self.cfg, bar.update)
            bar.close()
            if not ok.all():  # undecodable files, skipped as the CNN skips them (corpus.on_bad_file=skip)
                log.warning("%d utterance(s) could not be decoded and were skipped", int((~ok).sum()))
                manifest = Manifest([u for u, k in zip(manifest, ok, strict=True) if k], manifest.source)
                X, y, speakers = X[ok], y[ok], speakers[ok]
            self.provider = _static_provider(X, y, speakers)
        self.y, self.n_cls = y, len(classes)
        params = {"data.encoder": tags[ENCODER_TAG]} if ENCODER_TAG in tags else {}
        return CVData(manifest, classes, y, params=params, tags=tags)

    def fit_fold(self, plan: FoldPlan, log_epoch: Callable[[int, dict[str, float]], None]) -> FoldOutput:
        """Fit the estimator on the fold's training speakers; score its test utterances."""
        assert self.provider is not None, "prepare() first"
        X_tr, y_tr, g_tr, X_te, te_utt = self.provider(plan)
        est = _fit(build_estimator(self.cfg.model, int(self.cfg.seed) + plan.fold), X_tr, y_tr, g_tr)
        proba = _fold_proba(est, X_te, te_utt, len(plan.test), self.n_cls)
        return FoldOutput(scores={"utterance": proba.astype(np.float32)}, metrics=_fold_metrics(est))

    def log_model(self, tracker: RunTracker, tmp: Path) -> None:
        """Baselines log no model folder (``paraling predict`` serves CNNs)."""


def _encoder_tags(cfg: DictConfig, kind: str) -> dict[str, str]:
    """The pre-trained encoder whose pooled frames the model reads (``features=ssl``), as a tag."""
    if kind not in ("frames", "logmel"):
        return {}
    from paraling.features import make_extractor

    identity = getattr(make_extractor(cfg.features), "identity", None)
    return {ENCODER_TAG: str(identity)} if identity else {}


def run_baseline(
    cfg: DictConfig,
    reporter: Any = None,
    parent_run_id: str | None = None,
    overrides: list[str] | None = None,
    tags: dict[str, str] | None = None,
) -> RunResult:
    """Cross-validate the baseline ``cfg.model.kind`` and track it as one MLflow run.

    Args:
        cfg: Validated configuration with ``model.kind`` in ``svm``, ``rf``, ``dnn``, ``lr``.
        reporter: Unused (baselines report no per-epoch curves to searches).
        parent_run_id: Nest the run under this parent.
        overrides: The Hydra overrides (logged as the ``paraling train ...`` line).
        tags: Extra MLflow tags.

    Returns:
        A :class:`paraling.pipeline.results.RunResult`.
    """
    t0 = time.perf_counter()
    seed_everything(int(cfg.seed))
    if cfg.augment.kind != "none":
        log.warning(
            "augment=%s is ignored by the %s baseline (augmentation applies to the CNN)",
            cfg.augment.kind,
            cfg.model.kind,
        )
    runner = BaselineRunner(cfg, Progress(cfg.progress))
    data = runner.prepare()
    return run_cv(cfg, runner, data, parent_run_id=parent_run_id, overrides=overrides, tags=tags, t0=t0)
