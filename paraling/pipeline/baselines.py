"""Run an utterance-level baseline as one tracked, cross-validated experiment.

``paraling train model=svm|rf|dnn|lr ...`` (or ``experiment=net0``) reaches :func:`run_baseline` through
:func:`paraling.pipeline.experiment.run_experiment`. The corpus is loaded and split with the CNN's own
:func:`~paraling.data.splits.assign_folds` call (same ``cv`` settings and ``seed`` ⇒ the same speaker folds; the run's
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

import hashlib
import inspect
import json
import logging
import random
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from paraling.data.manifest import Manifest
from paraling.data.recipes import load_corpus
from paraling.data.splits import FoldPlan, assign_folds, plan_folds
from paraling.features.functionals import utterance_features
from paraling.models.baselines import make_estimator
from paraling.pipeline.results import RunResult, negative_class_index
from paraling.progress import Progress
from paraling.scoring.metrics import confusion_matrix, plot_confusion_matrix, summarize, uar
from paraling.scoring.oof import OOFScores, save_oof
from paraling.tracking.runs import NAME_TAG
from paraling.tracking.tracker import RunTracker, flatten

__all__ = ["FoldData", "prepare_folds", "run_baseline"]

log = logging.getLogger(__name__)

#: ``(X_train, y_train, speakers_train, X_test, test_utt)``: ``test_utt`` maps rows of ``X_test`` to positions in
#: ``plan.test`` (``None`` = one row per test utterance, in order).
FoldData = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]


def prepare_folds(cfg: DictConfig) -> tuple[Manifest, list[str], np.ndarray]:
    """Load the corpus and assign the CNN's speaker folds; returns ``(manifest, classes, y)``."""
    manifest = load_corpus(cfg.corpus)
    folds = assign_folds(manifest, cfg.cv.scheme, int(cfg.cv.folds), bool(cfg.cv.stratify), int(cfg.seed))
    manifest = manifest.with_folds(folds)
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


def _fold_metrics(est: Any, fold: int) -> dict[str, float]:
    out = {}
    if hasattr(est, "C_"):
        out[f"fold{fold}_C"] = float(est.C_)
    if hasattr(est, "best_epoch_"):
        out[f"fold{fold}_best_epoch"] = float(est.best_epoch_)
    return out


def run_baseline(
    cfg: DictConfig,
    reporter: Any = None,
    parent_run_id: str | None = None,
    overrides: list[str] | None = None,
    tags: dict[str, str] | None = None,
) -> Any:
    """Cross-validate the baseline ``cfg.model.name`` and track it as one MLflow run.

    Args:
        cfg: Validated configuration with ``model.name`` in ``svm``, ``rf``, ``dnn``, ``lr``.
        reporter: Unused (baselines report no per-epoch curves to searches).
        parent_run_id: Nest the run under this parent.
        overrides: The Hydra overrides (logged as the ``paraling train ...`` line).
        tags: Extra MLflow tags.

    Returns:
        A :class:`paraling.pipeline.results.RunResult`.
    """

    t0 = time.perf_counter()
    seed = int(cfg.seed)
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    name, b = str(cfg.model.name), cfg.model.baseline
    kind = str(b.features)
    if cfg.augment.name != "none":
        log.warning(
            "augment=%s is ignored by the %s baseline (augmentation applies to the CNN)", cfg.augment.name, name
        )
    manifest, classes, y = prepare_folds(cfg)
    speakers = np.array([u.speaker for u in manifest])
    progress = Progress(cfg.progress)
    extra_tags: dict[str, str] = {}
    if kind == "embeddings":
        from paraling.pipeline.embeddings_lr import CNNEmbeddings

        emb = CNNEmbeddings(cfg, manifest, classes)
        provider: Callable[[FoldPlan], FoldData] = emb.fold
        extra_tags["paraling.embedding_run"] = emb.run_id
    else:
        bar = progress.bar(len(manifest), f"{kind} features")
        X, ok = utterance_features(kind, [u.path for u in manifest], cfg, bar.update)
        bar.close()
        if not ok.all():  # undecodable files, skipped as the CNN skips them (corpus.on_bad_file=skip)
            log.warning("%d utterance(s) could not be decoded and were skipped", int((~ok).sum()))
            manifest = Manifest([u for u, k in zip(manifest, ok, strict=True) if k], manifest.source)
            X, y, speakers = X[ok], y[ok], speakers[ok]
        provider = _static_provider(X, y, speakers)
    all_tags = {
        NAME_TAG: cfg.name,
        "paraling.reproduce": ("paraling train " + " ".join(overrides or [])).strip(),
        "paraling.manifest_digest": manifest.digest(),
        "paraling.corpus": cfg.corpus.name,
        "paraling.seed": str(seed),
        "paraling.training.device": "cpu",
        "paraling.model_type": name,
        "paraling.features": kind,
        **extra_tags,
        **(tags or {}),
        **dict(cfg.tracking.tags),
    }
    tracker = RunTracker.from_config(cfg, parent_run_id, all_tags)
    n_cls = len(classes)
    with tracker.running(), tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        params = flatten(OmegaConf.to_container(cfg, resolve=True))  # type: ignore[arg-type]
        params.update(
            {
                "data.n_utterances": len(manifest),
                "data.n_speakers": len(manifest.speakers),
                "data.classes": json.dumps(classes),
            }
        )
        tracker.log_params(params)
        tracker.log_text(OmegaConf.to_yaml(cfg, resolve=True), "config.yaml")
        proba = np.full((len(manifest), n_cls), 1.0 / n_cls, np.float32)
        for plan in plan_folds(manifest):
            X_tr, y_tr, g_tr, X_te, te_utt = provider(plan)
            est = _fit(make_estimator(name, b, seed + plan.fold), X_tr, y_tr, g_tr)
            proba[plan.test] = _fold_proba(est, X_te, te_utt, len(plan.test), n_cls)
            fuar = uar(y[plan.test], proba[plan.test].argmax(1), n_cls)
            tracker.log_metrics({f"fold{plan.fold}_uar": fuar, **_fold_metrics(est, plan.fold)})
            log.info("%s fold %d: UAR %.3f", name, plan.fold, fuar)
        folds_arr = np.array([u.fold if u.fold is not None else -1 for u in manifest], dtype=np.int64)
        scored = folds_arr >= 0
        neg = negative_class_index(cfg.corpus, list(classes))
        metrics = summarize(
            y[scored], proba[scored].argmax(1), folds_arr[scored], speakers[scored], n_cls, negative_class=neg
        )
        metrics["seconds"] = time.perf_counter() - t0
        tracker.log_metrics(metrics)
        split = np.array(["test" if (u.split or "").lower() == "test" else "cv" for u in manifest])
        oof = OOFScores(np.array([u.id for u in manifest]), np.array(classes), y, folds_arr, split, speakers, proba)
        save_oof(oof, tmp / "oof" / "scores.npz")
        tracker.log_artifact(tmp / "oof", "oof")
        cm = confusion_matrix(y[scored], proba[scored].argmax(1), n_cls)
        plot_confusion_matrix(cm, classes, tmp / "plots" / "confusion_matrix.png")
        tracker.log_artifact(tmp / "plots", "plots")
        manifest.write(tmp / "data" / "manifest.jsonl")
        tracker.log_artifact(tmp / "data", "data")
        tracker.set_tags({"paraling.fold_digest": hashlib.blake2b(folds_arr.tobytes(), digest_size=10).hexdigest()})
    fold_uars = {
        int(k[len("uar_fold") :]): v
        for k, v in metrics.items()
        if k.startswith("uar_fold") and k[len("uar_fold") :].isdigit()
    }
    return RunResult(float(metrics["uar"]), metrics, tracker.run_id, oof, fold_uars, time.perf_counter() - t0, {})
