"""What the CPU is: its model name, feature flags and bfloat16 hardware (read from ``/proc/cpuinfo``)."""

from __future__ import annotations

import functools
import platform

__all__ = ["bf16_hardware", "cpu_flags", "cpu_model", "cpu_signature"]


@functools.lru_cache(maxsize=1)
def _cpuinfo() -> dict[str, str]:
    """The first ``model name`` and ``flags`` entries of ``/proc/cpuinfo`` (empty where it cannot be read)."""
    info: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key in ("model name", "flags") and key not in info:
                    info[key] = value.strip()
                    if len(info) == 2:
                        break
    except OSError:
        pass
    return info


def cpu_flags() -> frozenset[str]:
    """This CPU's feature flags as the kernel reports them (empty off Linux)."""
    return frozenset(_cpuinfo().get("flags", "").split())


def cpu_model() -> str:
    """This CPU's model name as the kernel reports it, else the platform's processor or machine name."""
    return _cpuinfo().get("model name") or platform.processor() or platform.machine()


def bf16_hardware() -> str:
    """How this CPU computes bfloat16: ``"amx"`` (AMX tiles), ``"avx512_bf16"`` (vector dot products) or ``"none"``.

    The bf16 matmul peak differs by kind: several times the fp32 peak with AMX, about twice it with AVX512-BF16.
    """
    flags = cpu_flags()
    if "amx_bf16" in flags:
        return "amx"
    return "avx512_bf16" if "avx512_bf16" in flags else "none"


def cpu_signature() -> str:
    """What identifies this CPU for a build: model name and flags."""
    info = _cpuinfo()
    return repr(sorted(info.items())) if info else cpu_model()
