"""What :func:`~paraling.pipeline.cv.run_cv` gathers from its folds and writes once they are done.

:class:`FoldResults` collects each fold's test scores, embeddings, window posteriors, curves and training facts in
manifest order; :func:`score_run` turns them into the run's headline metrics and out-of-fold scores (original
utterances only, augmented copies never count); :func:`write_outputs` writes the ``oof/``, ``plots/`` and ``data/``
artifacts into a folder.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from paraling.pipeline.results import negative_class_index
from paraling.scoring.metrics import confusion_matrix, summarize, uar
from paraling.scoring.oof import OOFScores, save_oof
from paraling.tracking.plots import plot_confusion_matrix, plot_curves

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from paraling.data.splits import FoldPlan
    from paraling.pipeline.fold_runner import CVData, FoldOutput, FoldRunner

__all__ = ["FoldResults", "Scored", "score_run", "write_outputs"]


@dataclass
class FoldResults:
    """What the folds of one run produced, in manifest order.

    Attributes:
        proba: Per aggregation method, ``(n_utterances, n_classes)`` test scores (uniform where no fold scored).
        embeddings: ``(n_utterances, dim)`` utterance embeddings (zeros where none).
        windows: Per fold, ``(proba float16, manifest row, start frame)`` of its test windows.
        histories: Per fold, its per-epoch metrics.
        fold_uars: Per fold, the UAR of the primary method.
        info: Per key of :attr:`FoldOutput.info`, the folds' distinct values.
    """

    proba: dict[str, np.ndarray]
    embeddings: np.ndarray
    windows: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=list)
    histories: dict[int, list[dict[str, float]]] = field(default_factory=dict)
    fold_uars: dict[int, float] = field(default_factory=dict)
    info: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def empty(cls, n_utts: int, n_classes: int, runner: FoldRunner) -> FoldResults:
        """Nothing scored yet."""
        proba = {m: np.full((n_utts, n_classes), 1.0 / n_classes, np.float32) for m in runner.methods}
        return cls(proba, np.zeros((n_utts, runner.embedding_dim), np.float32))

    def add(self, plan: FoldPlan, out: FoldOutput, runner: FoldRunner, y: np.ndarray) -> float:
        """Take one fold's output; returns its UAR (``runner.primary``)."""
        for m in runner.methods:
            self.proba[m][plan.test] = out.scores[m]
        if out.embeddings is not None and out.embeddings.shape[1] == runner.embedding_dim:
            self.embeddings[plan.test] = out.embeddings
        if out.windows is not None:
            w = out.windows
            self.windows.append((w.proba.astype(np.float16), plan.test[w.utt], w.start))
        if out.history:
            self.histories[plan.fold] = out.history
        for k, v in out.info.items():
            if v not in self.info.setdefault(k, []):
                self.info[k].append(v)
        n_classes = next(iter(self.proba.values())).shape[1]
        self.fold_uars[plan.fold] = uar(y[plan.test], out.scores[runner.primary].argmax(1), n_classes)
        return self.fold_uars[plan.fold]

    def facts(self) -> dict[str, str]:
        """How the folds were trained, one line per key."""
        return {k: "; ".join(v) for k, v in self.info.items()}


@dataclass
class Scored:
    """The run's headline metrics and its out-of-fold scores.

    Attributes:
        metrics: :func:`~paraling.scoring.metrics.summarize` of the primary method, ``uar_<method>`` of each
            method (when there are several) and ``seconds``.
        oof: The out-of-fold scores of the original utterances.
        scored: Manifest rows that count: original utterances with a fold.
        keep: Manifest rows of ``oof``: the original utterances.
        fold_digest: Identifies the fold assignment (paired tests check that runs share it).
    """

    metrics: dict[str, float]
    oof: OOFScores
    scored: np.ndarray
    keep: np.ndarray
    fold_digest: str


def _window_arrays(
    windows: list[tuple[np.ndarray, np.ndarray, np.ndarray]], keep: np.ndarray, n_utts: int
) -> dict[str, np.ndarray]:
    """The out-of-fold window arrays, their utterance index renumbered to the rows ``keep`` of the manifest."""
    if not windows:
        return {}
    remap = np.full(n_utts, -1, dtype=np.int64)
    remap[keep] = np.arange(len(keep))
    return {
        "window_proba": np.concatenate([w[0] for w in windows]),
        "window_utt": remap[np.concatenate([w[1] for w in windows])].astype(np.int32),
        "window_start": np.concatenate([w[2] for w in windows]).astype(np.int32),
    }


def score_run(cfg: DictConfig, data: CVData, results: FoldResults, runner: FoldRunner, t0: float) -> Scored:
    """Headline metrics and out-of-fold scores of a run whose folds are all in ``results``."""
    manifest, classes, y = data.manifest, data.classes, data.y
    n_cls = len(classes)
    orig = np.array([u.augmented_from is None for u in manifest])
    folds = np.array([u.fold if u.fold is not None else -1 for u in manifest], dtype=np.int64)
    speakers = np.array([u.speaker for u in manifest])
    scored = orig & (folds >= 0)
    keep = np.flatnonzero(orig)
    best = results.proba[runner.primary]
    negative = negative_class_index(cfg.corpus, list(classes))
    metrics = summarize(
        y[scored], best[scored].argmax(1), folds[scored], speakers[scored], n_cls, negative_class=negative
    )
    if len(runner.methods) > 1:
        for m in runner.methods:
            metrics[f"uar_{m}"] = uar(y[scored], results.proba[m][scored].argmax(1), n_cls)
    metrics["seconds"] = time.perf_counter() - t0
    split = np.array(["test" if (u.split or "").lower() == "test" else "cv" for u in manifest])
    oof = OOFScores(
        np.array([manifest[int(i)].id for i in keep]),
        np.array(classes),
        y[keep],
        folds[keep],
        split[keep],
        speakers[keep],
        best[keep],
        _window_arrays(results.windows, keep, len(manifest)),
    )
    digest = hashlib.blake2b(folds.tobytes(), digest_size=10).hexdigest()
    return Scored(metrics, oof, scored, keep, digest)


def write_outputs(tmp: Path, data: CVData, results: FoldResults, scored: Scored, runner: FoldRunner) -> None:
    """``oof/`` (scores; embeddings and every method's scores where there are any), ``plots/`` (confusion matrix,
    curves) and ``data/manifest.jsonl`` under ``tmp``."""
    oof, keep, rows = scored.oof, scored.keep, scored.scored
    save_oof(oof, tmp / "oof" / "scores.npz")
    if runner.embedding_dim or len(runner.methods) > 1:
        np.savez_compressed(tmp / "oof" / "embeddings.npz", utt_ids=oof.utt_ids, embeddings=results.embeddings[keep])
        aggregations: dict[str, Any] = {m: results.proba[m][keep] for m in runner.methods}
        np.savez_compressed(tmp / "oof" / "all_aggregations.npz", utt_ids=oof.utt_ids, **aggregations)
    best = results.proba[runner.primary]
    cm = confusion_matrix(data.y[rows], best[rows].argmax(1), len(data.classes))
    plot_confusion_matrix(cm, data.classes, tmp / "plots" / "confusion_matrix.png")
    if results.histories:
        plot_curves(results.histories, tmp / "plots" / "loss_curves.png")
    data.manifest.write(tmp / "data" / "manifest.jsonl")
