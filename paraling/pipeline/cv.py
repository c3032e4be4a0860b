"""The tracked cross-validation runner: one fold loop, one MLflow run, whatever model a fold trains.

:func:`run_cv` owns what every cross-validated experiment does the same way: the run's tags and parameters, the
fold loop over :func:`~paraling.data.splits.plan_folds`, per-fold metrics, mean learning curves, the headline
metrics of :func:`~paraling.scoring.metrics.summarize`, the out-of-fold scores (:mod:`paraling.scoring.oof`), the
confusion matrix, the manifest and the fold digest. What differs -- how the data is prepared and how one fold is
trained and scored -- is a :class:`FoldRunner`: the CNN (:mod:`paraling.pipeline.cnn`), the utterance-level
baselines and logistic regression on CNN embeddings (:mod:`paraling.pipeline.baselines`).
"""

from __future__ import annotations

import json
import logging
import random
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from paraling.data.manifest import atomic_write_text
from paraling.data.splits import describe_protocol, plan_folds
from paraling.pipeline.cv_outputs import FoldResults, score_run, write_outputs
from paraling.pipeline.dataset import AUDIO_DIGEST_TAG, audio_digest
from paraling.pipeline.fold_runner import CVData, FoldOutput, FoldRunner, WindowScores
from paraling.pipeline.results import RunResult
from paraling.tracking.runs import NAME_TAG, NEGATIVE_CLASS_TAG
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


def _run_tags(cfg: DictConfig, data: CVData, overrides: list[str] | None, tags: dict[str, str] | None) -> dict:
    return {
        NAME_TAG: cfg.name,
        "paraling.reproduce": _reproduce(overrides),
        "paraling.manifest_digest": data.manifest.digest(),
        AUDIO_DIGEST_TAG: audio_digest(cfg, data.manifest),
        "paraling.corpus": cfg.corpus.name,
        "paraling.protocol": protocol_of(cfg),
        "paraling.seed": str(cfg.seed),
        **({NEGATIVE_CLASS_TAG: str(cfg.corpus.negative_class)} if cfg.corpus.get("negative_class") else {}),
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
    sysm = system_metrics(tracker, bool(cfg.tracking.system_metrics), float(cfg.tracking.system_metrics_interval))
    with tracker.running(), sysm, tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        _log_inputs(tracker, cfg, data)
        tracker.log_metrics(data.metrics)
        results = FoldResults.empty(len(data.manifest), len(data.classes), runner)
        for plan in plan_folds(data.manifest):

            def log_epoch(epoch: int, m: dict[str, float], fold: int = plan.fold) -> None:
                tracker.log_metrics({fold_metric(fold, k): v for k, v in m.items()}, step=epoch)

            out = runner.fit_fold(plan, log_epoch)
            fold_uar = results.add(plan, out, runner, data.y)
            log.info("fold %d: UAR %.3f", plan.fold, fold_uar)
            tracker.log_metrics(
                {fold_metric(plan.fold, "uar"): fold_uar}
                | {fold_metric(plan.fold, k): v for k, v in out.metrics.items()}
            )
        _log_mean_curves(tracker, results.histories)
        scored = score_run(cfg, data, results, runner, t0)
        tracker.log_metrics(scored.metrics)
        write_outputs(tmp, data, results, scored, runner)
        for folder in ("oof", "plots", "data"):
            tracker.log_artifact(tmp / folder, folder)
        facts = results.facts()
        tracker.set_tags(
            {
                "paraling.fold_digest": scored.fold_digest,
                NOTE_TAG: run_note(cfg, scored.metrics, runner.methods, _reproduce(overrides), facts),
            }
            | {f"paraling.training.{k}": v[:5000] for k, v in facts.items()}
        )
        if cfg.tracking.log_model:
            runner.log_model(tracker, tmp)
    metrics = scored.metrics
    elapsed = time.perf_counter() - t0
    return RunResult(
        float(metrics["uar"]), metrics, tracker.run_id, scored.oof, results.fold_uars, elapsed, results.histories
    )


def _log_inputs(tracker: RunTracker, cfg: DictConfig, data: CVData) -> None:
    """The run's parameters (the resolved config and the data's sizes), ``config.yaml`` and its dataset."""
    manifest, classes = data.manifest, data.classes
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


NOTE_TAG = "mlflow.note.content"  # the run page's description
_FACT_NAMES = {"capture": "training step (trainer.capture, as run)", "capture_error": "why the graph capture failed"}


def _reproduce(overrides: list[str] | None) -> str:
    return ("paraling train " + " ".join(overrides or [])).strip()


def protocol_of(cfg: DictConfig) -> str:
    """The run's evaluation protocol in words (:func:`paraling.data.splits.describe_protocol`)."""
    cv = cfg.cv
    return describe_protocol(
        str(cv.scheme), int(cv.folds), str(cv.get("group_by", "speaker")), str(cv.get("test_split", "test"))
    )


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
        f"- model `{cfg.model.kind}`, corpus `{cfg.corpus.name}`, protocol: {protocol_of(cfg)}, seed {cfg.seed}",
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
