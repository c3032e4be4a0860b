"""A fold's training checkpoint: written atomically after each epoch, read back to resume a killed fold.

It holds the model and optimizer state, the best weights so far, the epoch, the metric history and selection, the
shuffling generator and the random number generators' states, so a resumed fold continues where it stopped.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from paraling.atomic import atomic_path
from paraling.device import load_state, rng_state, set_rng_state
from paraling.errors import ResourceError


class Progress(Protocol):
    """The selection state a checkpoint keeps (:class:`paraling.training.loop.FitResult` has it)."""

    history: list[dict[str, float]]
    best_epoch: int
    best_val_uar: float


__all__ = ["Progress", "checkpoint_state", "resume", "save_checkpoint"]

log = logging.getLogger("paraling.training.loop")


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write a checkpoint atomically; a full disk (or any write error) is one :class:`ResourceError`."""
    try:
        with atomic_path(path) as tmp:
            torch.save(state, tmp)
    except (OSError, RuntimeError) as exc:  # torch reports a short write as RuntimeError ("enforce fail ...")
        detail = " ".join(str(exc).split())[:200]
        raise ResourceError(
            f"cannot write the checkpoint {path} ({detail}); the disk may be full. Fix: free space under "
            f"{path.parent.parent}, point cache_dir elsewhere, or set trainer.checkpoint=false"
        ) from None


def resume(
    checkpoint: Path | None,
    model: nn.Module,
    opt: torch.optim.Optimizer,
    gen: torch.Generator,
    result: Progress,
    device: torch.device,
    fold: int,
) -> tuple[dict[str, torch.Tensor] | None, int]:
    """Restore a fold's checkpoint into the model, optimizer, generator and ``result``: the best weights so far and
    the epoch to start at (``(None, 0)`` without a usable checkpoint)."""
    if checkpoint is None or not checkpoint.exists():
        return None, 0
    try:
        state = load_state(checkpoint)
        model.load_state_dict(state["model"])  # copies onto the parameters' device
        opt.load_state_dict(state["opt"])  # casts the momentum buffers to the parameters' device
        result.history = [dict(h) for h in state["history"]]
        result.best_epoch, result.best_val_uar = int(state["best_epoch"]), float(state["best_val_uar"])
        gen.set_state(state["gen"])
        set_rng_state(state.get("rng", {}), device)
        start_epoch = int(state["epoch"]) + 1
    except (RuntimeError, KeyError, OSError, EOFError, TypeError, ValueError) as exc:
        log.warning("%s: unusable checkpoint (%s); training from scratch", checkpoint, exc)
        return None, 0
    log.info("fold %d: resumed from %s at epoch %d", fold, checkpoint, start_epoch)
    return state.get("best"), start_epoch


def checkpoint_state(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    best_state: dict[str, torch.Tensor] | None,
    epoch: int,
    result: Progress,
    gen: torch.Generator,
    device: torch.device,
) -> dict[str, Any]:
    """Everything :func:`resume` needs to continue after ``epoch``."""
    return {
        "model": model.state_dict(),
        "opt": opt.state_dict(),
        "best": best_state,
        "epoch": epoch,
        "history": result.history,
        "best_epoch": result.best_epoch,
        "best_val_uar": result.best_val_uar,
        "gen": gen.get_state(),
        "rng": rng_state(device),
    }
