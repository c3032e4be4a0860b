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

from paraling.errors import DeviceError
from paraling.ops.cpu import bf16_hardware

__all__ = [
    "available_memory",
    "capture_mode",
    "configure_determinism",
    "configure_fp32_math",
    "copy_into",
    "cuda_has_native_bf16",
    "eval_batch_size",
    "load_state",
    "memory_budget",
    "prepare_determinism_env",
    "resolve_device",
    "resolve_precision",
    "rng_state",
    "same_device",
    "set_rng_state",
    "synchronize",
    "to_device",
    "to_numpy",
]

log = logging.getLogger(__name__)

#: ``CUBLAS_WORKSPACE_CONFIG`` value that makes cuBLAS deterministic (CUDA >= 10.2); read when cuBLAS starts.
CUBLAS_DETERMINISTIC = ":4096:8"


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` → ``cuda`` when available, else ``cpu``; ``cpu``, ``cuda`` or ``cuda:N`` when this machine has it.

    Raises:
        DeviceError: ``name`` is not a device torch knows, or names a CUDA device that is not visible here (no GPU,
            a CPU-only build of torch, or an index past the visible GPUs). Asking for a GPU never falls back to the
            CPU silently.
    """
    name = str(name).strip()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise DeviceError(f"device={name!r} is not a device; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            built = f"CUDA {torch.version.cuda}" if torch.version.cuda else "no CUDA (a CPU-only build)"
            raise DeviceError(
                f"device={name!r} but no CUDA GPU is visible here (torch {torch.__version__}, built with {built}); "
                "use device=auto or device=cpu, or run on a machine with a GPU"
            )
        if device.index is not None and device.index >= n:
            raise DeviceError(f"device={name!r} but only {n} CUDA GPU(s) are visible here (cuda:0..cuda:{n - 1})")
    elif device.type != "cpu":
        raise DeviceError(f"device={name!r}: paraling runs on cpu or cuda; use auto, cpu, cuda or cuda:N")
    return device


def same_device(a: torch.device, b: torch.device) -> bool:
    """Whether ``a`` and ``b`` are one device (``cuda`` and ``cuda:0`` are: a tensor moved to ``cuda`` reports
    ``cuda:0``)."""

    def index(d: torch.device) -> int | None:
        return d.index if d.index is not None or d.type == "cpu" else 0

    return a.type == b.type and index(a) == index(b)


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


def configure_fp32_math(device: torch.device, dtype: torch.dtype | None) -> None:
    """Make fp32 mean IEEE fp32 on CUDA: cuDNN convolutions otherwise run in TF32 by default (10 mantissa bits).

    ``dtype`` is the run's autocast dtype (``None`` = fp32 asked for or chosen): then cuDNN convolutions and cuBLAS
    matmuls compute in full fp32. Under a reduced-precision autocast the library defaults stay (TF32 convolutions
    for the layers autocast keeps in fp32). Set per run, so a sweep worker's earlier trial does not leak into the next.
    """
    if device.type != "cuda":
        return
    conv = "ieee" if dtype is None else "tf32"
    torch.backends.cudnn.conv.fp32_precision = conv  # type: ignore[attr-defined]  # not in torch's stubs
    torch.backends.cuda.matmul.fp32_precision = "ieee"


def eval_batch_size(trainer_cfg: Any, device: torch.device) -> int:
    """Windows per evaluation batch: ``trainer.eval_batch_size_gpu`` on CUDA, ``trainer.eval_batch_size`` elsewhere."""
    if device.type == "cuda":
        return int(getattr(trainer_cfg, "eval_batch_size_gpu", 32768))
    return int(trainer_cfg.eval_batch_size)


def prepare_determinism_env(deterministic: bool) -> bool:
    """Set ``CUBLAS_WORKSPACE_CONFIG`` for a deterministic run; call it before anything starts CUDA.

    cuBLAS reads the variable once, when this process first uses it, so it must be in the environment before the
    first CUDA computation (paraling calls this first thing in a run). Returns whether it can still take effect: in a
    process where CUDA already ran without it (a sweep worker whose earlier trial was not deterministic), a warning
    says that cuBLAS may not be bit-reproducible for this run.
    """
    if not deterministic or os.environ.get("CUBLAS_WORKSPACE_CONFIG"):
        return True
    os.environ["CUBLAS_WORKSPACE_CONFIG"] = CUBLAS_DETERMINISTIC
    if torch.cuda.is_initialized():
        log.warning(
            "trainer.deterministic=true, but CUDA already started in this process without CUBLAS_WORKSPACE_CONFIG; "
            "cuBLAS may not be bit-reproducible in this run (set CUBLAS_WORKSPACE_CONFIG=%s before starting it)",
            CUBLAS_DETERMINISTIC,
        )
        return False
    return True


def configure_determinism(device: torch.device, deterministic: bool) -> None:
    """Make a seeded GPU run repeatable (or fast): cuDNN and cuBLAS settings, deterministic algorithms.

    On the CPU paraling's kernels are deterministic already and nothing changes. On CUDA, ``deterministic`` selects
    deterministic cuDNN convolutions, turns off cuDNN's autotuner, sets ``CUBLAS_WORKSPACE_CONFIG`` (see
    :func:`prepare_determinism_env`, which a run calls before CUDA starts) and asks torch for deterministic
    algorithms (``warn_only``: an op without one warns instead of failing the run). ``False`` (the default of sweep
    trials, ``trainer.deterministic``) lets cuDNN autotune and pick its fastest, non-deterministic kernels: 10-30%
    faster on small CNNs.
    """
    if device.type != "cuda":
        return
    prepare_determinism_env(deterministic)
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


def copy_into(dst: torch.Tensor, src: torch.Tensor) -> None:
    """Copy ``src`` into the existing tensor ``dst`` (a fixed buffer), asynchronously from pinned memory to CUDA.

    The pinned staging copy comes from torch's caching host allocator, which keeps it until the copy has run, so a
    later batch never overwrites a batch still in flight.
    """
    if dst.device.type == "cuda" and src.device.type == "cpu":
        dst.copy_(src.pin_memory(), non_blocking=True)
    else:
        dst.copy_(src)


def memory_budget(free: int, total: int, fraction: float | None, reserved: int) -> int:
    """Bytes this process may still take on a GPU: the device's free memory, capped by this process's share.

    Args:
        free: Free bytes on the device (all processes together).
        total: The device's memory in bytes.
        fraction: This process's share of it (``torch.cuda.set_per_process_memory_fraction``; ``None`` or ``>= 1``:
            no cap), e.g. ``1/K`` with ``K`` trials per GPU.
        reserved: Bytes this process's allocator already holds.
    """
    if fraction is None or fraction >= 1.0:
        return max(int(free), 0)
    return max(min(int(free), int(fraction * total) - int(reserved)), 0)


def _share_from_env() -> float | None:
    """The per-process GPU share a sweep worker was started with (``PARALING_GPU_SHARE``), for older torch."""
    try:
        return float(os.environ["PARALING_GPU_SHARE"])
    except (KeyError, ValueError):
        return None


def available_memory(device: torch.device) -> int:
    """Bytes free for tensors on ``device``: the GPU's free memory within this process's share, or the host's."""
    if device.type == "cuda":
        free, total = torch.cuda.mem_get_info(device)
        getter = getattr(torch.cuda, "get_per_process_memory_fraction", None)  # torch >= 2.8
        frac = float(getter(device)) if getter is not None else _share_from_env()
        return memory_budget(free, total, frac, torch.cuda.memory_reserved(device))
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
