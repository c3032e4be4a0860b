"""The GPU path's host/device crossings, tested on the CPU with a stand-in for device tensors.

The window bank's features, energies and window index are made :class:`DeviceOnly` (they live on the GPU in a CUDA
run), checkpoints load "onto the device" unless mapped to the host, and the shuffling generator refuses a device RNG
state, as CUDA does. A run and a resume must then go through, with the same results as a plain CPU run.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

# --- the stand-in -------------------------------------------------------------------------------------------------
# DeviceOnly behaves like a CUDA tensor where it matters for correctness: .numpy() and np.asarray refuse it (as they
# refuse a CUDA tensor), .cpu() and .to("cpu") give a plain host tensor, results of torch ops on it stay DeviceOnly.
# StrictGenerator refuses a DeviceOnly RNG state, as torch.Generator refuses a torch.cuda.ByteTensor. The patched
# torch.load plays a map_location that names the training device: tensors come back "on the device" unless the caller
# maps them to the host with "cpu".

_HOST_CONVERSIONS = {torch.Tensor.numpy, torch.Tensor.__array__}


def _is_host_target(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    target = kwargs.get("device", args[1] if len(args) > 1 else None)
    if isinstance(target, str | torch.device):
        return torch.device(target).type == "cpu"
    return False


class DeviceOnly(torch.Tensor):
    """A tensor that pretends to live on an accelerator (see the module docstring)."""

    @classmethod
    def __torch_function__(cls, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        if func in _HOST_CONVERSIONS:
            raise TypeError("can't convert device tensor to numpy. Use Tensor.cpu() to copy the tensor to host first.")
        if func is torch.Tensor.cpu or (func is torch.Tensor.to and _is_host_target(args, kwargs)):
            out = super().__torch_function__(func, types, args, kwargs)
            return torch.Tensor.as_subclass(out, torch.Tensor)
        return super().__torch_function__(func, types, args, kwargs)


def on_device(t: torch.Tensor) -> torch.Tensor:
    """``t`` as a :class:`DeviceOnly` tensor (same storage)."""
    return t.as_subclass(DeviceOnly) if not isinstance(t, DeviceOnly) else t


class StrictGenerator(torch.Generator):
    """``torch.Generator`` that, like the real one with a CUDA state, refuses an RNG state on the device."""

    def set_state(self, new_state: torch.Tensor) -> torch.Generator:
        if isinstance(new_state, DeviceOnly):
            raise TypeError("expected a torch.ByteTensor, but got torch.cuda.ByteTensor")
        return super().set_state(new_state)


def _map(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return on_device(obj)
    if isinstance(obj, dict):
        return {k: _map(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(_map(v) for v in obj)
    return obj


def make_load_onto_device(real_load: Any) -> Any:
    """A ``torch.load`` whose ``map_location`` (other than the host, ``"cpu"``) puts every tensor on the device."""

    def load(*args: Any, **kwargs: Any) -> Any:
        loc = kwargs.get("map_location")
        out = real_load(*args, **kwargs)
        return out if loc == "cpu" else _map(out)

    return load


def assert_refuses_host_conversion(t: torch.Tensor) -> None:
    """Check that the stand-in really refuses what CUDA refuses (so a passing guard means something)."""
    try:
        np.asarray(t)
    except TypeError:
        pass
    else:  # pragma: no cover - the stand-in is broken
        raise AssertionError("DeviceOnly accepted np.asarray")


# --- the guard ----------------------------------------------------------------------------------------------------


def _install_device_standin(monkeypatch: pytest.MonkeyPatch) -> list:
    """From now on every window bank holds its frames, energies and window starts "on the device"."""
    from paraling.data import windows

    real_setup = windows.WindowBank._setup
    made: list = []

    def setup(self, data, energy, rows, kept, width, shift):  # type: ignore[no-untyped-def]
        real_setup(self, on_device(data), on_device(energy), rows, kept, width, shift)
        self.starts = on_device(self.starts)
        made.append(self)

    monkeypatch.setattr(windows.WindowBank, "_setup", setup)
    monkeypatch.setattr(torch, "Generator", StrictGenerator)
    monkeypatch.setattr(torch, "load", make_load_onto_device(torch.load))
    return made


def test_experiment_with_the_bank_on_a_device_matches_a_plain_run(
    tiny_cfg, mlflow_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from paraling.pipeline.experiment import run_experiment

    cfg = tiny_cfg("trainer.epochs=2")
    plain = run_experiment(cfg)
    banks = _install_device_standin(monkeypatch)
    on = run_experiment(cfg)
    assert banks and isinstance(banks[0].starts, DeviceOnly) and isinstance(banks[0].data, DeviceOnly)
    assert_refuses_host_conversion(banks[0].starts)
    assert on.uar == plain.uar
    for key in ("window_start", "window_utt", "window_proba"):
        np.testing.assert_array_equal(on.oof.windows[key], plain.oof.windows[key])


def test_resume_from_a_checkpoint_saved_on_a_device(
    tiny_cfg, mlflow_uri: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from paraling.pipeline.experiment import run_experiment

    class KilledError(Exception):
        pass

    class StopAtEpoch1:
        def on_epoch_end(self, fold: int, epoch: int, metrics: dict[str, float]) -> None:
            if epoch == 1:
                raise KilledError

    _install_device_standin(monkeypatch)
    cfg = tiny_cfg("trainer.epochs=3", "trainer.checkpoint=true")
    with pytest.raises(KilledError):
        run_experiment(cfg, reporter=StopAtEpoch1())
    assert any(Path(cfg.cache_dir, "checkpoints").rglob("fold0.pt"))
    with caplog.at_level(logging.INFO, logger="paraling.training.loop"):
        res = run_experiment(cfg)
    assert "resumed from" in caplog.text and "unusable checkpoint" not in caplog.text
    assert len(res.histories[0]) == 3 and np.isfinite(res.uar)
