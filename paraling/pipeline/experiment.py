"""``run_experiment(cfg)``: the one place that wires corpus → features → windows → CNN → voting → metrics → MLflow.

One call is one speaker-independent cross-validated experiment and one MLflow run. Per fold the CNN trains on the
training speakers, selects its epoch on held-out speakers of the training fold, fits the voting estimators on those
held-out speakers' windows, and scores the fold's test utterances; out-of-fold scores of every utterance are saved in
the format of :mod:`paraling.scoring.oof`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import random
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from paraling.config_checks import check_training_memory, validate
from paraling.data.manifest import Manifest, atomic_write_text
from paraling.data.splits import plan_folds, split_validation_speakers
from paraling.models.cnn import build_model
from paraling.pipeline.dataset import PreparedData, eval_set, prepare_data
from paraling.pipeline.pretrain import apply_transfer, resolve_source
from paraling.pipeline.results import RunResult, negative_class_index
from paraling.pipeline.summary import print_summary
from paraling.progress import Progress
from paraling.scoring.aggregation import make_aggregator
from paraling.scoring.metrics import confusion_matrix, plot_confusion_matrix, summarize, uar
from paraling.scoring.oof import OOFScores, save_oof
from paraling.serving.predict import fold_state
from paraling.tracking.artifacts import log_model
from paraling.tracking.plots import plot_curves
from paraling.tracking.runs import NAME_TAG
from paraling.tracking.tracker import RunTracker, flatten
from paraling.training.device import (
    available_memory,
    configure_determinism,
    eval_batch_size,
    resolve_device,
    resolve_precision,
    to_numpy,
)
from paraling.training.loop import Reporter, fit, predict_windows
from paraling.training.runlock import hold_run_lock

_eval_set = eval_set  # kept for callers/tests that patch it

__all__ = ["PreparedData", "RunResult", "prepare_data", "print_summary", "run_experiment"]

log = logging.getLogger(__name__)

AGGREGATIONS = ("majority", "mean", "logmean", "weighted")


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def _checkpoint_dir(cfg: DictConfig, manifest: Manifest) -> Path:
    """Deterministic folder for per-fold checkpoints: same config + same data ⇒ same folder (resume)."""
    d = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(d, dict)
    d.pop("tracking", None)
    d.pop("progress", None)
    h = hashlib.blake2b(json.dumps(d, sort_keys=True, default=str).encode(), digest_size=10)
    h.update(manifest.digest().encode())
    return Path(cfg.cache_dir) / "checkpoints" / h.hexdigest()


class _FoldReporter:
    """Forwards epoch metrics to the caller's reporter and logs per-fold curves to MLflow."""

    def __init__(self, tracker: RunTracker, inner: Reporter | None) -> None:
        self.tracker, self.inner = tracker, inner

    def on_epoch_end(self, fold: int, epoch: int, metrics: dict[str, float]) -> None:
        self.tracker.log_metrics({f"fold{fold}_{k}": v for k, v in metrics.items()}, step=epoch)
        if self.inner is not None:
            self.inner.on_epoch_end(fold, epoch, metrics)


def _epoch_done(bar: Any, fold: int, epoch: int, m: dict[str, float]) -> None:
    bar.update(1, **{k: m[k] for k in ("train_loss", "val_uar") if k in m})
    log.info("fold %d epoch %d: %s", fold, epoch, " ".join(f"{k}={v:.4g}" for k, v in m.items()))


def _train_fold(
    cfg: DictConfig,
    data: PreparedData,
    plan: Any,
    device: torch.device,
    reporter: _FoldReporter,
    ckpt_dir: Path,
    progress: Progress,
) -> dict[str, Any]:
    """Train one fold; return window posteriors of its test utterances and the fitted aggregators' outputs."""
    bank, manifest, y_utt = data.bank, data.manifest, data.y_utt
    train_rows = plan.train
    speakers = np.array([manifest[i].speaker for i in train_rows])
    is_aug = np.array([manifest[i].augmented_from is not None for i in train_rows])
    val_mask = split_validation_speakers(
        speakers, y_utt[train_rows], float(cfg.trainer.val_speaker_fraction), int(cfg.seed) + plan.fold
    )
    fit_rows, val_rows = train_rows[~val_mask], train_rows[val_mask & ~is_aug]
    if cfg.features.normalize == "global":
        m = np.zeros(bank.n_utts, dtype=bool)
        m[fit_rows] = True
        bank.set_global_norm(m)
    unseen = sorted(set(y_utt[plan.test].tolist()) - set(y_utt[fit_rows].tolist()))
    if unseen:
        log.warning(
            "fold %d: class(es) %s occur in the test speakers but not in training; the CNN cannot predict "
            "them in this fold (they still count in UAR)",
            plan.fold,
            [data.classes[c] for c in unseen],
        )
    train_set = _eval_set(bank, fit_rows, y_utt)
    val_set = _eval_set(bank, val_rows, y_utt)
    test_set = _eval_set(bank, plan.test, y_utt)
    model = build_model(cfg.model, bank.n_mels, bank.width, len(data.classes))
    frozen: list[str] = []
    lr_start = None
    if cfg.transfer.source:
        frozen = apply_transfer(model, cfg.transfer, cfg, run=run_experiment)
        lr_start = cfg.transfer.lr_start
    bar = progress.bar(int(cfg.trainer.epochs), f"fold {plan.fold}")
    result = fit(
        model,
        bank,
        train_set.idx,
        train_set.y,
        val_set,
        cfg.trainer,
        reporter,
        plan.fold,
        int(cfg.seed),
        device,
        ckpt_dir / f"fold{plan.fold}.pt" if cfg.trainer.checkpoint else None,
        lambda e, m: _epoch_done(bar, plan.fold, e, m),
        frozen,
        int(cfg.transfer.freeze_epochs),
        lr_start,
    )
    bar.close()
    dtype = resolve_precision(cfg.trainer.precision, device)
    cl = bool(cfg.trainer.channels_last)
    ebs = eval_batch_size(cfg.trainer, device)
    p_val, _ = predict_windows(model, bank, val_set.idx, ebs, device, dtype, cl)
    p_test, emb_utt = predict_windows(
        model,
        bank,
        test_set.idx,
        ebs,
        device,
        dtype,
        cl,
        embeddings=True,
        groups=test_set.utt,
        n_groups=test_set.n_utts,
    )
    energy = bank.window_energy()
    e_val, e_test = energy[to_numpy(val_set.idx)], energy[to_numpy(test_set.idx)]
    scores = {}
    for method in AGGREGATIONS:
        params: dict[str, Any] = {}
        if method == "weighted":
            params = {
                "alpha": float(cfg.aggregation.ridge_alpha),
                "use_energy": bool(cfg.aggregation.use_energy),
            }
        agg = make_aggregator(method, **params).fit(p_val, to_numpy(val_set.y), val_set.utt, e_val)
        scores[method] = agg.predict_proba(p_test, test_set.utt, e_test, n_groups=test_set.n_utts)
        if method == cfg.aggregation.method:  # saved with the model so that `paraling predict` votes alike
            state = fold_state(method, agg, bank.mean, bank.std)
    if emb_utt is None:
        emb_utt = np.zeros((test_set.n_utts, 0), np.float32)
    return {
        "scores": scores,
        "window_proba": p_test,
        "window_utt": test_set.utt,
        "window_start": to_numpy(bank.starts[test_set.idx]) - bank.offsets[plan.test][test_set.utt],
        "embeddings": emb_utt,
        "fit": result,
        "model": model,
        "state": state,
    }


def run_experiment(
    cfg: DictConfig | Any,
    reporter: Reporter | None = None,
    parent_run_id: str | None = None,
    overrides: list[str] | None = None,
    tags: dict[str, str] | None = None,
) -> RunResult:
    """Run one cross-validated experiment and track it as one MLflow run.

    Args:
        cfg: Composed configuration (see :mod:`paraling.config`).
        reporter: Receives per-(fold, epoch) metrics; may raise :class:`~paraling.errors.Pruned`.
        parent_run_id: Nest the MLflow run under this parent (sweeps).
        overrides: The Hydra overrides that produced ``cfg`` (logged as the ``paraling train ...`` line).
        tags: Extra MLflow tags.

    Returns:
        A :class:`RunResult` whose ``uar`` is the out-of-fold UAR of the configured aggregation.
    """
    if not isinstance(cfg, DictConfig):
        cfg = OmegaConf.structured(cfg)
    cfg = validate(cfg)
    if cfg.model.name != "cnn":  # utterance-level baselines (svm, rf, dnn, lr): same folds, metrics and oof format
        from paraling.pipeline.baselines import run_baseline

        return run_baseline(cfg, parent_run_id=parent_run_id, overrides=overrides, tags=tags)
    source_run = None
    if cfg.transfer.source:  # resolve (or pre-train) the source before this run starts and before seeding
        source_run = resolve_source(cfg, run=run_experiment)
    t0 = time.perf_counter()
    _seed_everything(int(cfg.seed))
    if cfg.trainer.threads:
        torch.set_num_threads(int(cfg.trainer.threads))
    device = resolve_device(cfg.device)
    check_training_memory(cfg, available_memory(device), f"this machine's {device.type.upper()}")
    configure_determinism(device, bool(cfg.trainer.deterministic))
    progress = Progress(cfg.progress)
    data = prepare_data(cfg, progress)
    negative_class_index(cfg.corpus, list(data.classes))  # a wrong corpus.negative_class fails before training
    data.bank.to(device)  # on a GPU: features, window index and gathers on the device when they fit
    manifest = data.manifest
    reproduce = "paraling train " + " ".join(overrides or [])
    all_tags = {
        NAME_TAG: cfg.name,
        "paraling.reproduce": reproduce.strip(),
        "paraling.manifest_digest": manifest.digest(),
        "paraling.corpus": cfg.corpus.name,
        "paraling.seed": str(cfg.seed),
        "paraling.training.device": str(device),
        "paraling.model_type": "cnn",
        **({"paraling.transfer.source_run_id": source_run} if source_run else {}),
        **(tags or {}),
        **dict(cfg.tracking.tags),
    }
    ckpt_dir = _checkpoint_dir(cfg, manifest)
    with hold_run_lock(ckpt_dir) if cfg.trainer.checkpoint else contextlib.nullcontext():
        result = _tracked_run(
            cfg,
            data,
            device=device,
            ckpt_dir=ckpt_dir,
            progress=progress,
            reporter=reporter,
            parent_run_id=parent_run_id,
            all_tags=all_tags,
            t0=t0,
        )
        shutil.rmtree(ckpt_dir, ignore_errors=True)
    return result


def _tracked_run(
    cfg: DictConfig,
    data: PreparedData,
    *,
    device: torch.device,
    ckpt_dir: Path,
    progress: Progress,
    reporter: Reporter | None,
    parent_run_id: str | None,
    all_tags: dict[str, str],
    t0: float,
) -> RunResult:
    """The MLflow run of an experiment: reopened from the checkpoint folder's ``run_id`` when resuming."""
    manifest = data.manifest
    run_file = ckpt_dir / "run_id"
    previous = run_file.read_text().strip() if run_file.exists() and cfg.trainer.checkpoint else None
    tracker = RunTracker.from_config(cfg, parent_run_id, all_tags, run_id=previous)
    if tracker.run_id and cfg.trainer.checkpoint:
        atomic_write_text(run_file, tracker.run_id)
    with tracker.running(), tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        params = flatten(OmegaConf.to_container(cfg, resolve=True))  # type: ignore[arg-type]
        params.update(
            {
                "data.n_utterances": len(manifest),
                "data.n_windows": data.bank.n_windows,
                "data.n_speakers": len(manifest.speakers),
                "data.classes": json.dumps(data.classes),
            }
        )
        tracker.log_params(params)
        tracker.log_text(OmegaConf.to_yaml(cfg, resolve=True), "config.yaml")
        fold_reporter = _FoldReporter(tracker, reporter)
        n_cls = len(data.classes)
        orig = np.array([u.augmented_from is None for u in manifest])
        proba = {m: np.full((len(manifest), n_cls), 1.0 / n_cls, np.float32) for m in AGGREGATIONS}
        emb_dim = int(cfg.model.fc_sizes[-1]) if len(cfg.model.fc_sizes) else 0
        embeddings = np.zeros((len(manifest), emb_dim), np.float32)
        win_p, win_u, win_s = [], [], []
        models: dict[int, torch.nn.Module] = {}
        states: dict[int, dict[str, Any]] = {}
        histories: dict[int, list[dict[str, float]]] = {}
        for plan in plan_folds(manifest):
            out = _train_fold(cfg, data, plan, device, fold_reporter, ckpt_dir, progress)
            for m in AGGREGATIONS:
                proba[m][plan.test] = out["scores"][m]
            if out["embeddings"].shape[1] == emb_dim:
                embeddings[plan.test] = out["embeddings"]
            win_p.append(out["window_proba"].astype(np.float16))
            win_u.append(plan.test[out["window_utt"]])
            win_s.append(out["window_start"])
            models[plan.fold] = out["model"].cpu()
            states[plan.fold] = out["state"]
            histories[plan.fold] = out["fit"].history
            fuar = uar(data.y_utt[plan.test], out["scores"][cfg.aggregation.method].argmax(1), n_cls)
            tracker.log_metrics(
                {
                    f"fold{plan.fold}_uar": fuar,
                    f"fold{plan.fold}_best_epoch": out["fit"].best_epoch,
                    f"fold{plan.fold}_windows_per_s": out["fit"].windows_per_second,
                }
            )
        # mean curves over folds at step = epoch
        n_ep = max((len(h) for h in histories.values()), default=0)
        for ep in range(n_ep):
            rows = [h[ep] for h in histories.values() if len(h) > ep]
            tracker.log_metrics({k: float(np.mean([r[k] for r in rows])) for k in rows[0]}, step=ep)
        folds_arr = np.array([u.fold if u.fold is not None else -1 for u in manifest], dtype=np.int64)
        scored = orig & (folds_arr >= 0)
        keep = np.flatnonzero(orig)
        split = np.array(["test" if (u.split or "").lower() == "test" else "cv" for u in manifest])
        neg = negative_class_index(cfg.corpus, list(data.classes))
        method = cfg.aggregation.method
        metrics = summarize(
            data.y_utt[scored],
            proba[method][scored].argmax(1),
            folds_arr[scored],
            np.array([u.speaker for u in manifest])[scored],
            n_cls,
            negative_class=neg,
        )
        for m in AGGREGATIONS:
            metrics[f"uar_{m}"] = uar(data.y_utt[scored], proba[m][scored].argmax(1), n_cls)
        metrics["seconds"] = time.perf_counter() - t0
        tracker.log_metrics(metrics)
        remap = np.full(len(manifest), -1, dtype=np.int64)
        remap[keep] = np.arange(len(keep))
        windows = {}
        if win_p:
            windows = {
                "window_proba": np.concatenate(win_p),
                "window_utt": remap[np.concatenate(win_u)].astype(np.int32),
                "window_start": np.concatenate(win_s).astype(np.int32),
            }
        oof = OOFScores(
            np.array([manifest[i].id for i in keep]),
            np.array(data.classes),
            data.y_utt[keep],
            folds_arr[keep],
            split[keep],
            np.array([manifest[i].speaker for i in keep]),
            proba[method][keep],
            windows,
        )
        save_oof(oof, tmp / "oof" / "scores.npz")
        np.savez_compressed(tmp / "oof" / "embeddings.npz", utt_ids=oof.utt_ids, embeddings=embeddings[keep])
        np.savez_compressed(
            tmp / "oof" / "all_aggregations.npz",
            utt_ids=oof.utt_ids,
            **{m: proba[m][keep] for m in AGGREGATIONS},
        )
        tracker.log_artifact(tmp / "oof", "oof")
        cm = confusion_matrix(data.y_utt[scored], proba[method][scored].argmax(1), n_cls)
        plot_confusion_matrix(cm, data.classes, tmp / "plots" / "confusion_matrix.png")
        plot_curves(histories, tmp / "plots" / "loss_curves.png")
        tracker.log_artifact(tmp / "plots", "plots")
        manifest.write(tmp / "data" / "manifest.jsonl")
        tracker.log_artifact(tmp / "data", "data")
        tracker.set_tags({"paraling.fold_digest": hashlib.blake2b(folds_arr.tobytes(), digest_size=10).hexdigest()})
        if cfg.tracking.log_model:
            log_model(tracker, models, data, cfg, tmp, states)
    fold_uars = {
        int(k[len("uar_fold") :]): v
        for k, v in metrics.items()
        if k.startswith("uar_fold") and k[len("uar_fold") :].isdigit()
    }
    return RunResult(
        float(metrics["uar"]), metrics, tracker.run_id, oof, fold_uars, time.perf_counter() - t0, histories
    )
