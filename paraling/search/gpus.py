"""One GPU per worker: which GPUs a sweep uses, how workers are spread over them, and what each worker sees.

A worker is started with ``CUDA_VISIBLE_DEVICES`` set to its one GPU, so inside it that GPU is ``cuda:0`` and no
other GPU exists; ``K`` workers per GPU (``--trials-per-gpu K``) share one. The same assignment reaches Hydra
launcher jobs through ``hydra.job.env_set.CUDA_VISIBLE_DEVICES`` (the sweeper sets it per job of a batch). Each
trial records the GPU it ran on (Optuna user attribute ``gpu``, MLflow tag ``paraling.gpu``), read from its own
environment, so what is recorded is what the trial saw.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence

from paraling.errors import ConfigError

__all__ = ["GPU_ATTR", "GPU_TAG", "parse_gpus", "plan_gpus", "trial_gpu", "visible_gpus", "worker_env"]

GPU_ATTR = "gpu"
GPU_TAG = "paraling.gpu"
_ENV = "CUDA_VISIBLE_DEVICES"


def visible_gpus() -> list[str]:
    """The GPUs this process may use, as ids for ``CUDA_VISIBLE_DEVICES`` (empty without CUDA).

    Inside a ``CUDA_VISIBLE_DEVICES`` restriction the ids are the restriction's own entries, so a worker's id names
    the same physical GPU as its parent's.
    """
    try:
        import torch

        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:  # a broken driver counts as no GPU
        n = 0
    own = _visible_ids()
    return (own[:n] if own else [str(i) for i in range(n)]) if n else []


def _visible_ids() -> list[str]:
    """The entries of this process's ``CUDA_VISIBLE_DEVICES`` (empty when unset)."""
    return [s.strip() for s in os.environ.get(_ENV, "").split(",") if s.strip()]


def parse_gpus(text: str | None) -> list[str] | None:
    """``--gpus``: ``"0,1,3"`` → ``["0", "1", "3"]``; ``"none"`` → ``[]``; ``None``/``"all"`` → ``None`` (visible).

    Raises:
        ConfigError: An empty entry, a repeated id, or something that is not a GPU index or UUID.
    """
    if text is None or text.strip().lower() == "all":
        return None
    if text.strip().lower() == "none":
        return []
    ids = [s.strip() for s in text.split(",")]
    if any(not s or not (s.isdigit() or s.startswith(("GPU-", "MIG-"))) for s in ids) or len(set(ids)) != len(ids):
        raise ConfigError(
            f"--gpus {text!r}: give distinct GPU indexes or UUIDs separated by commas (e.g. --gpus 0,1,2,3), "
            "'all' or 'none'"
        )
    return ids


def plan_gpus(gpus: Sequence[str], trials_per_gpu: int, workers: int | None) -> list[str | None]:
    """The GPU of each worker: ``trials_per_gpu`` workers per GPU, or ``workers`` spread round-robin over them.

    Without GPUs: ``workers`` (default 1) workers without a GPU.

    Raises:
        ConfigError: ``trials_per_gpu`` or ``workers`` below 1.
    """
    if trials_per_gpu < 1:
        raise ConfigError(f"--trials-per-gpu must be >= 1, but got {trials_per_gpu}")
    if workers is not None and workers < 1:
        raise ConfigError(f"--workers must be >= 1, but got workers={workers}")
    if not gpus:
        return [None] * (workers or 1)
    n = workers if workers is not None else len(gpus) * trials_per_gpu
    return [gpus[i % len(gpus)] for i in range(n)]


@contextlib.contextmanager
def worker_env(gpu: str | None) -> Iterator[None]:
    """``CUDA_VISIBLE_DEVICES=gpu`` in this process's environment for the block (what a spawned child inherits)."""
    if gpu is None:
        yield
        return
    before = os.environ.get(_ENV)
    os.environ[_ENV] = gpu
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(_ENV, None)
        else:
            os.environ[_ENV] = before


def trial_gpu() -> str | None:
    """The GPU this process was assigned (its ``CUDA_VISIBLE_DEVICES`` when that names exactly one), else ``None``."""
    ids = _visible_ids()
    return ids[0] if len(ids) == 1 else None
