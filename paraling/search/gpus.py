"""One GPU per worker: which GPUs a sweep uses, how workers are spread over them, and what each worker sees.

A worker is started with ``CUDA_VISIBLE_DEVICES`` set to its one GPU, so inside it that GPU is ``cuda:0`` and no
other GPU exists; ``K`` workers per GPU (``--trials-per-gpu K``) share one. The same assignment reaches Hydra
launcher jobs through ``hydra.job.env_set.CUDA_VISIBLE_DEVICES`` (the sweeper sets it per job of a batch). Each
trial records the GPU it ran on (Optuna user attribute ``gpu``, MLflow tag ``paraling.gpu``), read from its own
environment, so what is recorded is what the trial saw.

Only a freshly started local process takes a ``CUDA_VISIBLE_DEVICES`` from paraling: the worker processes of
``paraling sweep`` and the jobs of Hydra's ``submitit_local`` launcher. A SLURM job keeps the binding SLURM gave it,
and a process that already started CUDA (Hydra's basic launcher runs jobs in the sweeper's own process, joblib reuses
its workers) would ignore a new value, so none is forced on them (:func:`launcher_pins_gpus`).

``K`` trials sharing one GPU each get ``1/K`` of its memory (``PARALING_GPU_SHARE``, applied with
``torch.cuda.set_per_process_memory_fraction`` by :func:`apply_gpu_share` when a trial starts): a trial that
outgrows its share fails alone with an out-of-memory error instead of starving its neighbours, and its window bank
stays in host memory when it would not fit in the share. Their kernels interleave on the GPU; NVIDIA's Multi-Process
Service (``nvidia-cuda-mps-control -d`` before the sweep) lets them run concurrently instead (docs/sweeps.md).
A worker given a GPU fails its trials when CUDA is absent in it (:func:`require_assigned_gpu`) instead of training
on the CPU.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence

from paraling.errors import ConfigError, DeviceError

__all__ = [
    "GPU_ATTR",
    "GPU_TAG",
    "apply_gpu_share",
    "check_gpus",
    "gpu_shares",
    "launcher_pins_gpus",
    "parse_gpus",
    "plan_gpus",
    "require_assigned_gpu",
    "trial_gpu",
    "visible_gpus",
    "worker_env",
]

GPU_ATTR = "gpu"
GPU_TAG = "paraling.gpu"
_ENV = "CUDA_VISIBLE_DEVICES"
SHARE_ENV = "PARALING_GPU_SHARE"
ASSIGNED_ENV = "PARALING_GPU"  # set with CUDA_VISIBLE_DEVICES when paraling assigned the GPU (not a user's own)
_LOCAL_LAUNCHERS = ("hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher",)


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


def check_gpus(requested: Sequence[str], visible: Sequence[str]) -> list[str]:
    """``requested`` when every id is one of the ``visible`` GPUs.

    Raises:
        DeviceError: No GPU is visible (then ``--gpus`` cannot be served: the trials would train on the CPU), or
            an id is not among the visible ones.
    """
    requested = list(requested)
    if requested and not visible:
        raise DeviceError(
            f"--gpus {','.join(requested)}: no CUDA GPU is visible here, so the trials would run on the CPU; "
            "drop --gpus (or use --gpus none) to run on the CPU, or run the sweep on a GPU machine"
        )
    missing = [g for g in requested if g not in visible]
    if missing:
        raise DeviceError(
            f"--gpus {','.join(requested)}: GPU(s) {','.join(missing)} not visible here (visible: {','.join(visible)}"
            f"{'; CUDA_VISIBLE_DEVICES=' + os.environ[_ENV] if os.environ.get(_ENV) else ''})"
        )
    return requested


def gpu_shares(plan: Sequence[str | None]) -> list[float | None]:
    """Each worker's share of its GPU's memory: ``1/K`` for ``K`` workers on that GPU (``None`` without a GPU)."""
    return [None if g is None else 1.0 / sum(1 for h in plan if h == g) for g in plan]


def launcher_pins_gpus(target: str) -> bool:
    """Whether the Hydra launcher ``target`` (its ``_target_``) starts a fresh local process per job, the only kind
    that a ``CUDA_VISIBLE_DEVICES`` set for the job reaches before CUDA starts."""
    return target in _LOCAL_LAUNCHERS


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


def gpu_env(gpu: str, share: float | None = None) -> dict[str, str]:
    """The environment of a fresh process confined to ``gpu``, with ``share`` of its memory."""
    env = {_ENV: gpu, ASSIGNED_ENV: gpu}
    if share is not None and share < 1.0:
        env[SHARE_ENV] = f"{share:.6f}"
    return env


@contextlib.contextmanager
def worker_env(gpu: str | None, share: float | None = None) -> Iterator[None]:
    """:func:`gpu_env` in this process's environment for the block (what a spawned child inherits)."""
    if gpu is None:
        yield
        return
    env = gpu_env(gpu, share)
    before = {k: os.environ.get(k) for k in (_ENV, ASSIGNED_ENV, SHARE_ENV)}
    os.environ.pop(SHARE_ENV, None)
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def require_assigned_gpu() -> None:
    """Fail when paraling gave this process a GPU but CUDA is not available in it (never train on the CPU instead).

    Raises:
        DeviceError: naming the GPU.
    """
    gpu = os.environ.get(ASSIGNED_ENV)
    if not gpu:
        return
    import torch

    if not torch.cuda.is_available():
        raise DeviceError(
            f"this worker was given GPU {gpu} (CUDA_VISIBLE_DEVICES={os.environ.get(_ENV, '')}) but CUDA is not "
            "available in it; check the driver and the GPU id, or sweep with --gpus none on the CPU"
        )


def apply_gpu_share() -> float | None:
    """Cap this process's CUDA memory at its share of the GPU (``PARALING_GPU_SHARE``); returns the share applied."""
    try:
        share = float(os.environ[SHARE_ENV])
    except (KeyError, ValueError):
        return None
    import torch

    if not (0.0 < share < 1.0) or not torch.cuda.is_available():
        return None
    torch.cuda.set_per_process_memory_fraction(share)
    return share


def trial_gpu() -> str | None:
    """The GPU this process was assigned (its ``CUDA_VISIBLE_DEVICES`` when that names exactly one), else ``None``."""
    ids = _visible_ids()
    return ids[0] if len(ids) == 1 else None
