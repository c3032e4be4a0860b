"""The fit loop: SGD with Nesterov momentum, linear learning-rate and momentum schedules, cross-entropy.

This module knows nothing of MLflow, Optuna or Hydra: progress goes to a :class:`Reporter` (tracking and search
plug in there; a reporter may raise :class:`~paraling.errors.Pruned` to stop the run). Model selection uses
held-out *speakers* of the training fold (the caller passes their windows as the validation set).
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, cast

import numpy as np
import torch
from torch import nn

from paraling.data.windows import WindowBank
from paraling.device import (
    capture_mode,
    configure_fp32_math,
    eval_batch_size,
    resolve_precision,
    to_device,
    to_numpy,
)
from paraling.errors import TrainingError
from paraling.scoring.metrics import uar
from paraling.training.augment import BatchAugment
from paraling.training.checkpoint import checkpoint_state, resume, save_checkpoint
from paraling.training.malloc import keep_freed_memory
from paraling.training.optim import make_optimizer
from paraling.training.steps import make_step, prepare_batch

__all__ = [
    "EvalSet",
    "FitOptions",
    "FitResult",
    "NullReporter",
    "Reporter",
    "fit",
    "linear_schedule",
    "predict_windows",
]

log = logging.getLogger(__name__)


class Reporter(Protocol):
    """Receives per-epoch metrics. May raise :class:`~paraling.errors.Pruned` to stop training."""

    def on_epoch_end(self, fold: int, epoch: int, metrics: dict[str, float]) -> None:
        """Called after each epoch with ``train_loss``, ``val_loss``, ``val_uar``, ``lr``, ``momentum``..."""


class NullReporter:
    """A reporter that ignores everything."""

    def on_epoch_end(self, fold: int, epoch: int, metrics: dict[str, float]) -> None:
        """Ignore the metrics."""


@dataclass
class EvalSet:
    """Windows of some utterances plus what is needed to score them at utterance level.

    Attributes:
        idx: ``(n_windows,)`` window indices into the bank.
        y: ``(n_windows,)`` true class per window.
        utt: ``(n_windows,)`` local utterance index (0..n_utts-1) per window.
        n_utts: Number of utterances.
    """

    idx: torch.Tensor
    y: torch.Tensor
    utt: np.ndarray
    n_utts: int


@dataclass
class FitResult:
    """What :func:`fit` returns."""

    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = -1
    best_val_uar: float = float("nan")
    seconds: float = 0.0
    windows_per_second: float = 0.0
    capture: str = "eager"
    capture_error: str | None = None
    captures: int = 0


def linear_schedule(start: float, end: float, epochs: int) -> np.ndarray:
    """Values linearly spaced from ``start`` (first epoch) to ``end`` (last epoch)."""
    return np.linspace(start, end, num=max(epochs, 1)) if epochs > 1 else np.array([start])


def _autocast(device: torch.device, dtype: torch.dtype | None) -> Any:
    if dtype is None:
        return torch.autocast(device.type, enabled=False)
    return torch.autocast(device.type, dtype=dtype)


@torch.no_grad()
def predict_windows(
    model: nn.Module,
    bank: WindowBank,
    idx: torch.Tensor,
    batch_size: int = 2048,
    device: torch.device | None = None,
    precision: torch.dtype | None = None,
    channels_last: bool = False,
    embeddings: bool = False,
    groups: np.ndarray | None = None,
    n_groups: int | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Class posteriors (and optionally embeddings) of windows ``idx``.

    With ``groups`` (``(n,)`` utterance index per window), embeddings are averaged per group while batches stream
    through, so memory stays ``(n_groups, embed_dim)`` instead of one embedding per window.

    Returns:
        ``(proba (n, n_classes) float32, emb)`` where ``emb`` is ``(n, embed_dim)``, ``(n_groups, embed_dim)`` with
        ``groups``, or ``None`` without ``embeddings``.
    """
    device = device or next(model.parameters()).device
    if device.type == "cpu":
        keep_freed_memory()
    was_training = model.training
    model.eval()
    n_classes = int(cast(int, model.n_classes))  # the window-model interface (paraling.models.registry)
    n = int(idx.numel())
    # Results stay on the model's device until the end: one copy to the host, no wait for the GPU per batch. The
    # output is filled in place (no small per-batch blocks left between big temporaries on the CPU).
    proba = torch.empty(n, n_classes, device=device)
    idx = to_device(idx, bank.starts.device)  # once, asynchronously: gathers then index on the bank's device
    embs = []
    sums: torch.Tensor | None = None
    g_all = to_device(torch.from_numpy(np.asarray(groups, dtype=np.int64)), device) if groups is not None else None
    try:
        for s in range(0, n, batch_size):
            x = prepare_batch(to_device(bank.gather(idx[s : s + batch_size]), device), channels_last)
            with _autocast(device, precision):
                h = model.features(x)  # type: ignore[operator]
                logits = model.classify(h)  # type: ignore[operator]
            proba[s : s + len(x)] = torch.softmax(logits.float(), dim=1)
            if embeddings and g_all is not None:
                hb = h.float()
                if sums is None:
                    k = int(n_groups) if n_groups is not None else int(np.max(groups)) + 1  # type: ignore[arg-type]
                    sums = torch.zeros(k, hb.shape[1], device=device)
                sums.index_add_(0, g_all[s : s + batch_size], hb)
            elif embeddings:
                embs.append(h.float())
    finally:
        model.train(was_training)
    emb = to_numpy(torch.cat(embs)) if embeddings and embs else None
    if embeddings and g_all is not None and sums is not None:
        counts = torch.bincount(g_all, minlength=sums.shape[0]).clamp_min(1)
        emb = to_numpy(sums / counts[:, None])
    return to_numpy(proba), emb


def _utterance_uar(proba: np.ndarray, ev: EvalSet) -> float:
    """UAR of mean-posterior utterance decisions on an evaluation set."""
    sums = np.zeros((ev.n_utts, proba.shape[1]), np.float64)
    np.add.at(sums, ev.utt, proba)
    y_utt = np.zeros(ev.n_utts, np.int64)
    y_utt[ev.utt] = to_numpy(ev.y)
    seen = np.bincount(ev.utt, minlength=ev.n_utts) > 0
    return float(uar(y_utt[seen], sums[seen].argmax(1)))


@dataclass
class FitOptions:
    """How :func:`fit` runs, beyond the ``trainer`` config.

    Attributes:
        reporter: Receives per-epoch metrics; may raise ``Pruned``.
        fold: Fold number (passed to the reporter; seeds the shuffling with ``seed``).
        seed: Seed for the shuffling.
        device: Torch device (default: CPU).
        checkpoint: When given, the state after every epoch is saved there and training resumes from it.
        progress: Called after each epoch with ``(epoch, metrics)`` (progress bars).
        frozen: Names of layers kept frozen for the first ``freeze_epochs`` epochs (transfer learning).
        freeze_epochs: See ``frozen``.
        lr_start: Overrides ``cfg.lr_start`` (reduced start rate for transfer runs).
        lr_scales: Learning-rate factors by top-level layer name (transferred or fine-tuned layers learn slower).
    """

    reporter: Reporter | None = None
    fold: int = 0
    seed: int = 0
    device: torch.device | None = None
    checkpoint: Path | None = None
    progress: Callable[[int, dict[str, float]], None] | None = None
    frozen: Sequence[str] = ()
    freeze_epochs: int = 0
    lr_start: float | None = None
    lr_scales: Mapping[str, float] = field(default_factory=dict)


def fit(
    model: nn.Module,
    bank: WindowBank,
    train_idx: torch.Tensor,
    train_y: torch.Tensor,
    val: EvalSet | None,
    cfg: Any,
    options: FitOptions | None = None,
) -> FitResult:
    """Train ``model`` on windows ``train_idx`` of ``bank`` (labels ``train_y``), selecting on ``val``.

    Args:
        model: The CNN (moved to ``device`` here).
        bank: The window bank (on ``device``).
        train_idx: ``(n,)`` training window indices.
        train_y: ``(n,)`` class per training window.
        val: Validation windows of held-out speakers, or ``None`` (then the last epoch is kept).
        cfg: A ``trainer`` config node (epochs, batch_size, lr_start/lr_end, momentum_start/end, nesterov, ...).
        options: Reporter, fold, seed, device, checkpoint, progress callback and freezing (:class:`FitOptions`).

    Returns:
        A :class:`FitResult`; ``model`` holds the selected weights afterwards.

    Raises:
        TrainingError: The loss became NaN/Inf (names the epoch and suggests a lower learning rate).
    """
    o = options or FitOptions()
    reporter = o.reporter or NullReporter()
    device = o.device or torch.device("cpu")
    dtype, channels_last = _place_model(model, cfg, device)
    epochs = int(cfg.epochs)
    lrs = linear_schedule(float(o.lr_start if o.lr_start is not None else cfg.lr_start), float(cfg.lr_end), epochs)
    moms = linear_schedule(float(cfg.momentum_start), float(cfg.momentum_end), epochs)
    optimizer = str(getattr(cfg, "optimizer", "sgd"))
    opt = make_optimizer(optimizer, model, o.lr_scales, float(lrs[0]), float(moms[0]), cfg)
    gen = torch.Generator().manual_seed(o.seed * 1000 + o.fold)  # shuffling: a CPU generator, saved in checkpoints
    result = FitResult()
    best_state, start_epoch = resume(o.checkpoint, model, opt, gen, result, device, o.fold)
    # Window indices live where the bank's index does (on the GPU when the bank was moved there), labels with them:
    # a batch then needs no host work. A bank left in host memory gathers there and copies each batch over.
    index_device = bank.starts.device
    train_idx, train_y = train_idx.to(index_device), train_y.to(index_device)
    mode = capture_mode(str(getattr(cfg, "capture", "auto")), device)
    if optimizer != "sgd" and mode != "eager":
        log.info("trainer.optimizer=%s steps eagerly (only the SGD step keeps its rates on the device)", optimizer)
        mode = "eager"
    augment = BatchAugment.from_config(cfg)
    if augment is not None:
        augment.to(device)  # its draws happen on the device (a captured step cannot copy from the host)
    runner = make_step(
        mode,
        model,
        opt,
        bank,
        int(cfg.batch_size),
        idx=train_idx,
        y=train_y,
        device=device,
        dtype=dtype,
        channels_last=channels_last,
        augment=augment,
    )
    t_start, seen = time.perf_counter(), 0
    for epoch in range(start_epoch, epochs):
        opt.set_schedule(float(lrs[epoch]), float(moms[epoch]))
        _freeze(model, o.frozen if o.frozen and epoch < o.freeze_epochs else [])
        train_loss = _train_epoch(model, runner, int(train_idx.numel()), cfg, gen, index_device)
        seen += runner.n_seen
        if not math.isfinite(train_loss):
            raise TrainingError(
                f"fold {o.fold}: training loss became {train_loss} at epoch {epoch}; lower trainer.lr_start "
                f"(now {lrs[0]:g}) or check the features for NaN"
            )
        metrics = {"train_loss": train_loss, "lr": float(lrs[epoch]), "momentum": float(moms[epoch])}
        if val is not None and val.idx.numel():
            metrics |= _validation_metrics(model, bank, val, cfg, device, dtype, channels_last)
            improved = not metrics["val_uar"] <= result.best_val_uar  # NaN-safe: first epoch always improves
            if cfg.select == "best" and improved:
                result.best_epoch, result.best_val_uar = epoch, metrics["val_uar"]
                best_state = copy.deepcopy(model.state_dict())
        result.history.append(metrics)
        if o.progress is not None:
            o.progress(epoch, metrics)
        reporter.on_epoch_end(o.fold, epoch, metrics)
        # The checkpoint comes after the metrics are logged: a kill between the two re-runs the epoch (its metrics
        # are then logged twice) instead of skipping it on resume (its metrics never logged).
        if o.checkpoint is not None:
            save_checkpoint(o.checkpoint, checkpoint_state(model, opt, best_state, epoch, result, gen, device))
        if cfg.patience and result.best_epoch >= 0 and epoch - result.best_epoch >= int(cfg.patience):
            log.info("fold %d: early stop at epoch %d (best %d)", o.fold, epoch, result.best_epoch)
            break
    _freeze(model, [])
    if cfg.select == "best" and best_state is not None:
        model.load_state_dict(best_state)
    elif cfg.select == "last":
        result.best_epoch = len(result.history) - 1
    result.capture = getattr(runner, "mode", mode)
    result.capture_error = getattr(runner, "error", None)
    result.captures = int(getattr(runner, "captures", 0))
    result.seconds = time.perf_counter() - t_start
    result.windows_per_second = seen / result.seconds if result.seconds > 0 else 0.0
    return result


def _place_model(model: nn.Module, cfg: Any, device: torch.device) -> tuple[torch.dtype | None, bool]:
    """Move ``model`` to ``device`` in the layout and kernels ``cfg`` asks for; its autocast dtype and layout."""
    if device.type == "cpu":
        keep_freed_memory()
    dtype = resolve_precision(cfg.precision, device)
    configure_fp32_math(device, dtype)
    channels_last = bool(cfg.channels_last)
    if hasattr(model, "kernels"):  # trainer.native=false: the ops' torch reference everywhere
        cast(Any, model).kernels = "auto" if bool(getattr(cfg, "native", True)) else "reference"
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    return dtype, channels_last


def _freeze(model: nn.Module, layers: Sequence[str]) -> None:
    """Stop the gradients of ``layers`` (top-level names); every other parameter trains."""
    for name, p in model.named_parameters():
        p.requires_grad_(name.split(".")[0] not in layers)


def _train_epoch(
    model: nn.Module, runner: Any, n: int, cfg: Any, gen: torch.Generator, index_device: torch.device
) -> float:
    """One pass over a shuffled permutation of the ``n`` training windows (at most ``max_windows_per_epoch``);
    the epoch's mean loss."""
    model.train()
    bs = int(cfg.batch_size)
    perm = torch.randperm(n, generator=gen)
    if cfg.max_windows_per_epoch:
        perm = perm[: int(cfg.max_windows_per_epoch)]
    perm = to_device(perm, index_device)  # once per epoch
    runner.begin_epoch()
    for s in range(0, int(perm.numel()), bs):
        b = perm[s : s + bs]
        if b.numel() >= 2:
            runner.step(b)
    return float(runner.epoch_loss())


def _validation_metrics(
    model: nn.Module,
    bank: WindowBank,
    val: EvalSet,
    cfg: Any,
    device: torch.device,
    dtype: torch.dtype | None,
    channels_last: bool,
) -> dict[str, float]:
    """``val_loss`` (mean window cross-entropy) and ``val_uar`` (utterance posterior means) of the validation set."""
    proba, _ = predict_windows(model, bank, val.idx, eval_batch_size(cfg, device), device, dtype, channels_last)
    y_val = to_numpy(val.y)
    loss = float(-np.log(np.clip(proba[np.arange(len(y_val)), y_val], 1e-12, None)).mean())
    return {"val_loss": loss, "val_uar": _utterance_uar(proba, val)}
