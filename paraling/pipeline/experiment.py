"""``run_experiment(cfg)``: one speaker-independent cross-validated experiment, tracked as one MLflow run.

A dispatch: the level of ``model.kind`` (:mod:`paraling.models.registry`) picks the
:class:`~paraling.pipeline.cv.FoldRunner` (a window model, the CNN by default, in :mod:`paraling.pipeline.cnn`, or an
utterance-level model in :mod:`paraling.pipeline.baselines`), and
:func:`~paraling.pipeline.cv.run_cv` runs its folds and tracks the run. What only the CNN needs happens here:
resolving (or pre-training) a transfer source, the device, and the checkpoint folder that a killed run resumes from.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from paraling.cache_marker import mark_cache
from paraling.config_checks import check_training_memory, validate
from paraling.data.manifest import Manifest
from paraling.device import (
    available_memory,
    configure_determinism,
    prepare_determinism_env,
    resolve_device,
)
from paraling.models import model_level
from paraling.pipeline.cnn import CNNRunner
from paraling.pipeline.cv import run_cv, seed_everything
from paraling.pipeline.dataset import PreparedData, prepare_data
from paraling.pipeline.encoder_transfer import is_encoder_transfer, resolve_encoder_transfer
from paraling.pipeline.pretrain import SOURCE_TAG, load_transfer_source
from paraling.pipeline.results import RunResult
from paraling.progress import Progress
from paraling.training.loop import Reporter
from paraling.training.runlock import hold_run_lock

__all__ = ["PreparedData", "RunResult", "prepare_data", "run_experiment"]


def _checkpoint_dir(cfg: DictConfig, manifest: Manifest, features: str = "") -> Path:
    """Deterministic folder for per-fold checkpoints: same config + same data + same features (``features``: the
    extractor's key, which holds a pre-trained encoder's identity) ⇒ same folder (resume)."""
    d = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(d, dict)
    d.pop("tracking", None)
    d.pop("progress", None)
    h = hashlib.blake2b(json.dumps(d, sort_keys=True, default=str).encode(), digest_size=10)
    h.update(manifest.digest().encode())
    h.update(features.encode())
    return Path(cfg.cache_dir) / "checkpoints" / h.hexdigest()


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
    prepare_determinism_env(bool(cfg.trainer.deterministic))  # before anything starts CUDA (cuBLAS reads it once)
    mark_cache(cfg.cache_dir)  # paraling cache clean deletes only in folders tagged (or laid out) as paraling's
    cfg = resolve_encoder_transfer(cfg)  # transfer=encoder: the layers to fine-tune, in the model and features
    if model_level(str(cfg.model.kind)) == "utterance":  # svm, rf, dnn, lr...: same folds, metrics and oof format
        from paraling.pipeline.baselines import run_baseline

        return run_baseline(cfg, parent_run_id=parent_run_id, overrides=overrides, tags=tags)
    tags = dict(tags or {})
    source = None
    if cfg.transfer.source and not is_encoder_transfer(cfg):  # resolve (or pre-train) the source before seeding
        source = load_transfer_source(cfg, run=run_experiment)
        tags = {SOURCE_TAG: source.run_id, **tags}
    t0 = time.perf_counter()
    seed_everything(int(cfg.seed))
    if cfg.trainer.threads:
        torch.set_num_threads(int(cfg.trainer.threads))
    device = resolve_device(cfg.device)
    check_training_memory(cfg, available_memory(device), f"this machine's {device.type.upper()}")
    configure_determinism(device, bool(cfg.trainer.deterministic))
    progress = Progress(cfg.progress)
    resume = bool(cfg.trainer.checkpoint)
    runner = CNNRunner(cfg, device, progress, reporter, None, source)
    data = runner.prepare()
    assert runner.data is not None, "prepare() sets it"
    spec = runner.data.spec
    encoder = spec.key() if hasattr(spec, "identity") else ""  # a pre-trained encoder's: its weights are in the key
    ckpt_dir = _checkpoint_dir(cfg, data.manifest, encoder)
    if resume:
        runner.checkpoints = ckpt_dir
    with hold_run_lock(ckpt_dir) if resume else contextlib.nullcontext():
        result = run_cv(
            cfg,
            runner,
            data,
            parent_run_id=parent_run_id,
            overrides=overrides,
            tags=tags,
            run_id_file=ckpt_dir / "run_id" if resume else None,
            t0=t0,
        )
        shutil.rmtree(ckpt_dir, ignore_errors=True)
    return result
