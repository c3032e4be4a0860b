"""The one place where tensors cross between host and accelerator, and where devices and precisions are chosen.

Rules the rest of the package keeps (``tests/unit/training/test_device.py`` checks them over the source):

* device → host goes through :func:`to_numpy` (``.detach().cpu().numpy()``), never a bare ``.numpy()``: a bare one
  works on the CPU and raises ``TypeError: can't convert cuda tensor to numpy`` on a GPU;
* host → device goes through :func:`to_device`, which copies asynchronously only from pinned memory (a
  ``non_blocking`` copy from pageable memory is synchronous anyway);
* checkpoints are read by :func:`load_state`, which maps every tensor to the CPU: RNG states must stay CPU
  ``ByteTensor`` (``torch.Generator.set_state`` refuses anything else), and ``load_state_dict`` copies weights and
  optimizer state onto the parameters' device by itself.

Nothing here knows about models, MLflow or Hydra.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from paraling.ops.cpu import bf16_hardware

__all__ = [
    "available_memory",
    "capture_mode",
    "configure_determinism",
    "cuda_has_native_bf16",
    "eval_batch_size",
    "load_state",
    "resolve_device",
    "resolve_precision",
    "rng_state",
    "set_rng_state",
    "synchronize",
    "to_device",
    "to_numpy",
]

log = logging.getLogger(__name__)

#: ``CUBLAS_WORKSPACE_CONFIG`` value that makes cuBLAS deterministic (CUDA >= 10.2); read when cuBLAS starts.
CUBLAS_DETERMINISTIC = ":4096:8"


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` → ``cuda`` when available, else ``cpu``; anything else is passed to :class:`torch.device`."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def cuda_has_native_bf16(device: torch.device | None = None) -> bool:
    """Whether the GPU computes bfloat16 in hardware (compute capability >= 8.0: Ampere, Ada, Hopper and later).

    ``torch.cuda.is_bf16_supported()`` alone also counts bf16 *emulated* on older GPUs, where it is slower than fp32.
    """
    if not torch.cuda.is_available():
        return False
    major, _ = torch.cuda.get_device_capability(device)
    return major >= 8 and torch.cuda.is_bf16_supported(including_emulation=False)


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 in hardware (AMX or AVX512-BF16; read from ``/proc/cpuinfo``)."""
    return bf16_hardware() != "none"


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype for ``precision`` (``None`` = plain fp32).

    ``auto`` is bf16 where the hardware computes it (GPUs of compute capability >= 8.0, see
    :func:`cuda_has_native_bf16`; CPUs with AMX or AVX512-BF16) and fp32 elsewhere. Under bf16 autocast only the
    convolutions run in bfloat16: :class:`~paraling.models.cnn.WindowCNN` keeps its fully connected layers in float32,
    which measured no loss of UAR against plain fp32 (docs/performance.md, (g)).
    """
    if precision == "bf16":
        return torch.bfloat16
    if precision == "auto" and device.type == "cuda" and cuda_has_native_bf16(device):
        return torch.bfloat16
    if precision == "auto" and device.type == "cpu" and cpu_has_native_bf16():
        return torch.bfloat16
    return None


def capture_mode(name: str, device: torch.device) -> str:
    """The training-step runner for ``trainer.capture``: ``auto`` → ``graph`` on CUDA, ``eager`` elsewhere.

    ``graph`` needs CUDA; asked for elsewhere it falls back to ``eager`` with a warning.
    """
    if name == "auto":
        return "graph" if device.type == "cuda" else "eager"
    if name == "graph" and device.type != "cuda":
        log.warning("trainer.capture=graph needs a CUDA device (training on %s); running eagerly", device)
        return "eager"
    return name


def eval_batch_size(trainer_cfg: Any, device: torch.device) -> int:
    """Windows per evaluation batch: ``trainer.eval_batch_size_gpu`` on CUDA, ``trainer.eval_batch_size`` elsewhere."""
    if device.type == "cuda":
        return int(getattr(trainer_cfg, "eval_batch_size_gpu", 32768))
    return int(trainer_cfg.eval_batch_size)


def configure_determinism(device: torch.device, deterministic: bool) -> None:
    """Make a seeded GPU run repeatable (or fast): cuDNN and cuBLAS settings, deterministic algorithms.

    On the CPU paraling's kernels are deterministic already and nothing changes. On CUDA, ``deterministic`` selects
    deterministic cuDNN convolutions, turns off cuDNN's autotuner, sets ``CUBLAS_WORKSPACE_CONFIG`` (when unset, before
    cuBLAS starts) and asks torch for deterministic algorithms (``warn_only``: an op without one warns instead of
    failing the run); ``False`` lets cuDNN autotune instead.
    """
    if device.type != "cuda":
        return
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_DETERMINISTIC)
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = not deterministic
    torch.use_deterministic_algorithms(deterministic, warn_only=True)


def to_numpy(t: torch.Tensor | np.ndarray) -> np.ndarray:
    """A host numpy array of ``t`` from any device (a copy from an accelerator, a view of a CPU tensor)."""
    if isinstance(t, np.ndarray):
        return t
    return t.detach().cpu().numpy()


def to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``t`` on ``device``: an asynchronous copy from pinned memory when a CPU tensor goes to CUDA."""
    if t.device == device:
        return t
    if device.type == "cuda" and t.device.type == "cpu":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


def available_memory(device: torch.device) -> int:
    """Bytes free for tensors on ``device``: the GPU's free memory, or the host's available memory."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    import psutil

    return int(psutil.virtual_memory().available)


def synchronize(device: torch.device) -> None:
    """Wait for the queued work on ``device`` (for timing; a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def load_state(path: Path) -> dict[str, Any]:
    """A checkpoint saved by ``torch.save``, every tensor on the CPU (weights only: no code is unpickled)."""
    return torch.load(path, map_location="cpu", weights_only=True)


def rng_state(device: torch.device) -> dict[str, torch.Tensor]:
    """torch's global RNG states that training draws from (dropout masks): the CPU one and, on CUDA, the device's."""
    state = {"cpu": torch.random.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, torch.Tensor], device: torch.device) -> None:
    """Restore what :func:`rng_state` saved (a checkpoint of another device type restores the CPU state only)."""
    if "cpu" in state:
        torch.random.set_rng_state(state["cpu"].cpu())
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"].cpu(), device)
