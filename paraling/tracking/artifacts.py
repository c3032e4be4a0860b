"""Run artifacts written by :func:`paraling.pipeline.experiment.run_experiment`: the model folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from paraling.pipeline.dataset import PreparedData
from paraling.tracking.tracker import RunTracker
from paraling.training.loop import resolve_device, resolve_precision

__all__ = ["log_model"]


def log_model(
    tracker: RunTracker,
    models: dict[int, torch.nn.Module],
    data: PreparedData,
    cfg: DictConfig,
    tmp: Path,
    states: dict[int, dict[str, Any]],
) -> None:
    """Log ``model/``: per-fold safetensors weights, fitted votes (JSON) and ``spec.json``."""
    from safetensors.torch import save_file

    out = tmp / "model"
    out.mkdir()
    for fold, model in models.items():
        save_file(
            {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
            str(out / f"fold{fold}.safetensors"),
        )
        (out / f"fold{fold}.json").write_text(json.dumps(states[fold]))
    spec = {
        "classes": data.classes,
        "features": OmegaConf.to_container(cfg.features, resolve=True),
        "windows": OmegaConf.to_container(cfg.windows, resolve=True),
        "model": OmegaConf.to_container(cfg.model, resolve=True),
        "aggregation": OmegaConf.to_container(cfg.aggregation, resolve=True),
        "n_mels": data.bank.n_mels,
        "folds": sorted(models),
        "layer_names": next(iter(models.values())).layer_names if models else [],
        # how the out-of-fold scores were computed, so that `paraling predict` reproduces them
        "precision": "bf16" if resolve_precision(str(cfg.trainer.precision), resolve_device(cfg.device)) else "fp32",
        "channels_last": bool(cfg.trainer.channels_last),
    }
    (out / "spec.json").write_text(json.dumps(spec, indent=2))
    tracker.log_artifact(out, "model")
