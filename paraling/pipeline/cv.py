"""The tracked cross-validation runner: one fold loop, one MLflow run, whatever model a fold trains.

:func:`run_cv` owns what every cross-validated experiment does the same way: the run's tags and parameters, the
fold loop over :func:`~paraling.data.splits.plan_folds`, per-fold metrics, mean learning curves, the headline
metrics of :func:`~paraling.scoring.metrics.summarize`, the out-of-fold scores (:mod:`paraling.scoring.oof`), the
confusion matrix, the manifest and the fold digest. What differs -- how the data is prepared and how one fold is
trained and scored -- is a :class:`FoldRunner`: the CNN (:mod:`paraling.pipeline.cnn`), the utterance-level
baselines and logistic regression on CNN embeddings (:mod:`paraling.pipeline.baselines`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from paraling.data.manifest import Manifest, atomic_write_text
from paraling.data.splits import FoldPlan, plan_folds
from paraling.pipeline.dataset import AUDIO_DIGEST_TAG, audio_digest
from paraling.pipeline.results import RunResult, negative_class_index
from paraling.scoring.metrics import confusion_matrix, summarize, uar
from paraling.scoring.oof import OOFScores, save_oof
from paraling.tracking.plots import plot_confusion_matrix, plot_curves
from paraling.tracking.runs import NAME_TAG
from paraling.tracking.system_metrics import system_metrics
from paraling.tracking.tracker import RunTracker, flatten

__all__ = [
    "CVData",
    "FoldOutput",
    "FoldRunner",
    "WindowScores",
    "fold_metric",
    "fold_metric_keys",
    "legacy_fold_metric",
    "mean_metric",
    "run_cv",
    "seed_everything",
]

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def fold_metric(fold: int, name: str) -> str:
    """The MLflow name of metric ``name`` of fold ``fold``: ``val_uar/fold3``.

    MLflow's chart view groups metrics by the part before the ``/``, so one section holds one quantity across
    folds (and its fold mean, :func:`mean_metric`). Runs logged before this naming used ``fold3_val_uar``
    (:func:`legacy_fold_metric`); readers accept both (:func:`fold_metric_keys`).
    """
    return f"{name}/fold{fold}"


def mean_metric(name: str) -> str:
    """The MLflow name of the folds' mean of per-epoch metric ``name``: ``val_uar/mean``."""
    return f"{name}/mean"


def legacy_fold_metric(fold: int, name: str) -> str:
    """The name runs logged before ``name/fold<k>``: ``fold3_val_uar`` (read, never written)."""
    return f"fold{fold}_{name}"


def fold_metric_keys(fold: int, name: str) -> tuple[str, str]:
    """Where to look for metric ``name`` of fold ``fold``: the current name first, then the legacy one."""
    return fold_metric(fold, name), legacy_fold_metric(fold, name)


@dataclass
class CVData:
    """The corpus a runner cross-validates, with its speaker folds assigned.

    Attributes:
        manifest: Every utterance (augmented copies included), each with its ``fold``.
        classes: Class names; ``y`` indexes them.
        y: Class id per utterance of ``manifest``.
        params: Extra ``data.*`` run parameters (sizes).
        tags: Runner-specific MLflow tags (``paraling.model_type``, the device, ...).
    """

    manifest: Manifest
    classes: list[str]
    y: np.ndarray
    params: dict[str, Any] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)


@dataclass
class WindowScores:
    """Window posteriors of a fold's test utterances.

    Attributes:
        proba: ``(n_windows, n_classes)`` posteriors.
        utt: Position of each window's utterance in ``plan.test``.
        start: First frame of each window within its utterance.
    """

    proba: np.ndarray
    utt: np.ndarray
    start: np.ndarray


@dataclass
class FoldOutput:
    """What one fold produced.

    Attributes:
        scores: Per aggregation method, ``(len(plan.test), n_classes)`` utterance scores of the fold's test rows.
        metrics: Per-fold scalars to log (logged as ``fold<k>_<name>``).
        embeddings: ``(len(plan.test), dim)`` utterance embeddings, or ``None``.
        windows: Window posteriors, or ``None`` (utterance-level models).
        history: Per-epoch training metrics (empty for models without epochs).
        info: How the fold was trained, in words (``{"capture": "graph"}``): tagged on the run as
            ``paraling.training.<key>`` (the folds' distinct values) and listed in its description.
    """

    scores: dict[str, np.ndarray]
    metrics: dict[str, float] = field(default_factory=dict)
    embeddings: np.ndarray | None = None
    windows: WindowScores | None = None
    history: list[dict[str, float]] = field(default_factory=list)
    info: dict[str, str] = field(default_factory=dict)


class FoldRunner(Protocol):
    """One kind of model under :func:`run_cv`.

    Attributes:
        methods: The aggregation methods a fold's ``scores`` hold (``("utterance",)`` for utterance-level models);
            the run's headline is ``primary``.
        primary: The method whose scores are the run's out-of-fold scores.
        embedding_dim: Width of ``FoldOutput.embeddings`` (0: the runner has none).
    """

    methods: tuple[str, ...]
    primary: str
    embedding_dim: int

    def prepare(self) -> CVData:
        """Load the corpus (and whatever a fold needs) with its folds assigned."""
        ...

    def fit_fold(self, plan: FoldPlan, log_epoch: Callable[[int, dict[str, float]], None]) -> FoldOutput:
        """Train on ``plan.train`` and score ``plan.test``; ``log_epoch(epoch, metrics)`` tracks a curve."""
        ...

    def log_model(self, tracker: RunTracker, tmp: Path) -> None:
        """Log the trained model (or nothing) once every fold is done."""
        ...


def _run_tags(cfg: DictConfig, data: CVData, overrides: list[str] | None, tags: dict[str, str] | None) -> dict:
    return {
        NAME_TAG: cfg.name,
        "paraling.reproduce": _reproduce(overrides),
        "paraling.manifest_digest": data.manifest.digest(),
        AUDIO_DIGEST_TAG: audio_digest(cfg, data.manifest),
        "paraling.corpus": cfg.corpus.name,
        "paraling.seed": str(cfg.seed),
        **data.tags,
        **(tags or {}),
        **dict(cfg.tracking.tags),
    }


def run_cv(
    cfg: DictConfig,
    runner: FoldRunner,
    data: CVData,
    *,
    parent_run_id: str | None = None,
    overrides: list[str] | None = None,
    tags: dict[str, str] | None = None,
    run_id_file: Path | None = None,
    t0: float | None = None,
) -> RunResult:
    """Cross-validate ``runner`` on ``data`` and track it as one MLflow run.

    Args:
        cfg: Validated configuration.
        runner: The model's :class:`FoldRunner`.
        data: What ``runner.prepare()`` returned.
        parent_run_id: Nest the run under this parent (sweeps).
        overrides: The Hydra overrides (logged as the ``paraling train ...`` line).
        tags: Extra MLflow tags.
        run_id_file: Resume: a run id stored there reopens that run, and a new run's id is stored there.
        t0: ``time.perf_counter()`` at the start of the experiment (for the ``seconds`` metric).

    Returns:
        A :class:`~paraling.pipeline.results.RunResult`; ``fold_uars`` are the folds' UARs of ``runner.primary``.
    """
    t0 = time.perf_counter() if t0 is None else t0
    previous = run_id_file.read_text().strip() if run_id_file is not None and run_id_file.exists() else None
    tracker = RunTracker.from_config(cfg, parent_run_id, _run_tags(cfg, data, overrides, tags), run_id=previous)
    if tracker.run_id and run_id_file is not None:
        atomic_write_text(run_id_file, tracker.run_id)
    manifest, classes, y = data.manifest, data.classes, data.y
    n_cls = len(classes)
    sysm = system_metrics(tracker, bool(cfg.tracking.system_metrics), float(cfg.tracking.system_metrics_interval))
    with tracker.running(), sysm, tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        params = flatten(OmegaConf.to_container(cfg, resolve=True))  # type: ignore[arg-type]
        params.update(
            {
                "data.n_utterances": len(manifest),
                **data.params,
                "data.n_speakers": len(manifest.speakers),
                "data.classes": json.dumps(classes),
            }
        )
        tracker.log_params(params)
        tracker.log_text(OmegaConf.to_yaml(cfg, resolve=True), "config.yaml")
        profile = {"utterances": len(manifest), "speakers": len(manifest.speakers), "classes": len(classes)}
        tracker.log_dataset(str(cfg.corpus.name), manifest.digest(), str(manifest.source), profile)
        proba = {m: np.full((len(manifest), n_cls), 1.0 / n_cls, np.float32) for m in runner.methods}
        embeddings = np.zeros((len(manifest), runner.embedding_dim), np.float32)
        windows: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        histories: dict[int, list[dict[str, float]]] = {}
        fold_uars: dict[int, float] = {}
        info: dict[str, list[str]] = {}
        for plan in plan_folds(manifest):

            def log_epoch(epoch: int, m: dict[str, float], fold: int = plan.fold) -> None:
                tracker.log_metrics({fold_metric(fold, k): v for k, v in m.items()}, step=epoch)

            out = runner.fit_fold(plan, log_epoch)
            for m in runner.methods:
                proba[m][plan.test] = out.scores[m]
            if out.embeddings is not None and out.embeddings.shape[1] == runner.embedding_dim:
                embeddings[plan.test] = out.embeddings
            if out.windows is not None:
                w = out.windows
                windows.append((w.proba.astype(np.float16), plan.test[w.utt], w.start))
            if out.history:
                histories[plan.fold] = out.history
            for k, v in out.info.items():
                if v not in info.setdefault(k, []):
                    info[k].append(v)
            fold_uars[plan.fold] = uar(y[plan.test], out.scores[runner.primary].argmax(1), n_cls)
            log.info("fold %d: UAR %.3f", plan.fold, fold_uars[plan.fold])
            tracker.log_metrics(
                {fold_metric(plan.fold, "uar"): fold_uars[plan.fold]}
                | {fold_metric(plan.fold, k): v for k, v in out.metrics.items()}
            )
        _log_mean_curves(tracker, histories)
        orig = np.array([u.augmented_from is None for u in manifest])
        folds_arr = np.array([u.fold if u.fold is not None else -1 for u in manifest], dtype=np.int64)
        speakers = np.array([u.speaker for u in manifest])
        scored = orig & (folds_arr >= 0)
        keep = np.flatnonzero(orig)
        best = proba[runner.primary]
        metrics = summarize(
            y[scored],
            best[scored].argmax(1),
            folds_arr[scored],
            speakers[scored],
            n_cls,
            negative_class=negative_class_index(cfg.corpus, list(classes)),
        )
        if len(runner.methods) > 1:
            for m in runner.methods:
                metrics[f"uar_{m}"] = uar(y[scored], proba[m][scored].argmax(1), n_cls)
        metrics["seconds"] = time.perf_counter() - t0
        tracker.log_metrics(metrics)
        split = np.array(["test" if (u.split or "").lower() == "test" else "cv" for u in manifest])
        oof = OOFScores(
            np.array([manifest[i].id for i in keep]),
            np.array(classes),
            y[keep],
            folds_arr[keep],
            split[keep],
            speakers[keep],
            best[keep],
            _window_arrays(windows, keep, len(manifest)),
        )
        save_oof(oof, tmp / "oof" / "scores.npz")
        if runner.embedding_dim or len(runner.methods) > 1:
            np.savez_compressed(tmp / "oof" / "embeddings.npz", utt_ids=oof.utt_ids, embeddings=embeddings[keep])
            np.savez_compressed(
                tmp / "oof" / "all_aggregations.npz",
                utt_ids=oof.utt_ids,
                **{m: proba[m][keep] for m in runner.methods},
            )
        tracker.log_artifact(tmp / "oof", "oof")
        cm = confusion_matrix(y[scored], best[scored].argmax(1), n_cls)
        plot_confusion_matrix(cm, classes, tmp / "plots" / "confusion_matrix.png")
        if histories:
            plot_curves(histories, tmp / "plots" / "loss_curves.png")
        tracker.log_artifact(tmp / "plots", "plots")
        manifest.write(tmp / "data" / "manifest.jsonl")
        tracker.log_artifact(tmp / "data", "data")
        facts = {k: "; ".join(v) for k, v in info.items()}
        tracker.set_tags(
            {
                "paraling.fold_digest": hashlib.blake2b(folds_arr.tobytes(), digest_size=10).hexdigest(),
                NOTE_TAG: run_note(cfg, metrics, runner.methods, _reproduce(overrides), facts),
            }
            | {f"paraling.training.{k}": v[:5000] for k, v in facts.items()}
        )
        if cfg.tracking.log_model:
            runner.log_model(tracker, tmp)
    return RunResult(
        float(metrics["uar"]), metrics, tracker.run_id, oof, fold_uars, time.perf_counter() - t0, histories
    )


NOTE_TAG = "mlflow.note.content"  # the run page's description
_FACT_NAMES = {"capture": "training step (trainer.capture, as run)", "capture_error": "why the graph capture failed"}


def _reproduce(overrides: list[str] | None) -> str:
    return ("paraling train " + " ".join(overrides or [])).strip()


def run_note(
    cfg: DictConfig,
    metrics: dict[str, float],
    methods: tuple[str, ...],
    reproduce: str,
    facts: dict[str, str] | None = None,
) -> str:
    """The run page's description (Markdown): the headline a reader needs before any chart.

    ``facts`` are how the folds were trained (:attr:`FoldOutput.info`), e.g. the training step that actually ran.
    """
    lines = [
        f"**Out-of-fold UAR {metrics['uar']:.3f}** (95% CI {metrics.get('uar_ci_low', float('nan')):.3f}-"
        f"{metrics.get('uar_ci_high', float('nan')):.3f}; folds {metrics.get('uar_fold_mean', float('nan')):.3f} "
        f"+/- {metrics.get('uar_fold_std', float('nan')):.3f})",
        "",
        f"- model `{cfg.model.kind}`, corpus `{cfg.corpus.name}`, {int(cfg.cv.folds)} speaker folds, seed {cfg.seed}",
    ]
    if len(methods) > 1:
        by = ", ".join(f"{m} {metrics[f'uar_{m}']:.3f}" for m in methods if f"uar_{m}" in metrics)
        lines.append(f"- UAR by aggregation: {by} (headline: `{cfg.aggregation.kind}`)")
    if "uar_binary" in metrics:
        lines.append(f"- 2-class UAR ({cfg.corpus.negative_class} vs the rest): {metrics['uar_binary']:.3f}")
    for k, v in (facts or {}).items():
        lines.append(f"- {_FACT_NAMES.get(k, k)}: {v}")
    lines += [f"- {metrics['seconds']:.0f} s", "", f"Reproduce: `{reproduce}`"]
    return "\n".join(lines)


def _log_mean_curves(tracker: RunTracker, histories: dict[int, list[dict[str, float]]]) -> None:
    """The folds' mean of each per-epoch metric at step = epoch (folds that stopped early drop out)."""
    n_ep = max((len(h) for h in histories.values()), default=0)
    for ep in range(n_ep):
        rows = [h[ep] for h in histories.values() if len(h) > ep]
        tracker.log_metrics({mean_metric(k): float(np.mean([r[k] for r in rows])) for k in rows[0]}, step=ep)


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
