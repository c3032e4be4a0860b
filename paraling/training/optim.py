"""SGD with (Nesterov) momentum whose learning rate and momentum live in device tensors.

The paper's schedules change the learning rate and the momentum every epoch. ``torch.optim.SGD`` takes the momentum
as a Python float, so a CUDA graph that records its step bakes the epoch's values in and has to be recorded again
each epoch (each recording synchronises the device and empties the allocator's cache). :class:`ScheduledSGD` reads
both from 0-dim tensors on the parameters' device, updated in place between epochs (:meth:`ScheduledSGD.set_schedule`,
no host sync), so one recorded step serves the whole fit. The update is ``torch.optim.SGD``'s, to float rounding
(``tests/unit/training/test_optim.py`` compares them step by step), dampening 0:

    g = grad + weight_decay * p;  b = momentum * b + g;  p -= lr * (g + momentum * b if nesterov else b)

Momentum buffers are created (as zeros) with the optimizer, so no buffer is ever allocated inside a captured step;
``momentum * 0 + g`` is ``torch.optim.SGD``'s first step, ``b = g``. State dicts have ``torch.optim.SGD``'s layout
(``momentum_buffer`` per parameter; ``lr``, ``momentum``, ``dampening`` 0 ... in the groups): checkpoints written with
``torch.optim.SGD`` resume with it.

Parameter groups may carry an ``lr_scale`` (:func:`param_groups`): their step is scaled by it, so layers transferred
from a pre-trained model learn slower than a fresh head (discriminative learning rates). :class:`ScheduledAdamW` is
``torch.optim.AdamW`` with the same ``set_schedule`` and ``lr_scale`` (its float rates run eagerly, not captured).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch

__all__ = ["OPTIMIZERS", "ScheduledAdamW", "ScheduledSGD", "make_optimizer", "param_groups"]

OPTIMIZERS = ("sgd", "adamw")


class ScheduledSGD(torch.optim.Optimizer):
    """SGD + momentum with tensor-valued, schedulable learning rate and momentum (one parameter device).

    Args:
        params: Parameters to optimise (all on one device), or groups of them (:func:`param_groups`).
        lr: Initial learning rate.
        momentum: Initial momentum.
        nesterov: Nesterov momentum.
        weight_decay: L2 penalty added to the gradient.

    Raises:
        ValueError: A negative learning rate, momentum or weight decay, or parameters on several devices.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float,
        momentum: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
    ) -> None:
        if lr < 0 or momentum < 0 or weight_decay < 0:
            raise ValueError(f"lr, momentum and weight_decay must be >= 0, got {lr}, {momentum}, {weight_decay}")
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "dampening": 0.0,
            "nesterov": nesterov,
            "weight_decay": weight_decay,
            "maximize": False,
        }
        super().__init__(params, defaults)
        devices = {p.device for g in self.param_groups for p in g["params"]}
        if len(devices) > 1:
            raise ValueError(f"ScheduledSGD needs its parameters on one device, got {sorted(map(str, devices))}")
        device = devices.pop() if devices else torch.device("cpu")
        self.lr_t = torch.tensor(float(lr), device=device)
        self.momentum_t = torch.tensor(float(momentum), device=device)
        self._ensure_buffers()

    def _ensure_buffers(self) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                state = self.state[p]
                if state.get("momentum_buffer") is None:
                    state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)

    def set_schedule(self, lr: float, momentum: float) -> None:
        """This epoch's learning rate and momentum: written into the device tensors in place (no host sync)."""
        for group in self.param_groups:
            group["lr"], group["momentum"] = float(lr), float(momentum)
        self.lr_t.fill_(float(lr))
        self.momentum_t.fill_(float(momentum))

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a ``ScheduledSGD`` or ``torch.optim.SGD`` state; the tensors take the loaded groups' values."""
        super().load_state_dict(state_dict)
        self._ensure_buffers()
        group = self.param_groups[0]
        self.lr_t.fill_(float(group["lr"]))
        self.momentum_t.fill_(float(group["momentum"]))

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        """One update of every parameter that has a gradient (a graph may record it: no host sync, no allocation
        that outlives the step)."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        lr, mom = self.lr_t, self.momentum_t
        for group in self.param_groups:
            wd, nesterov = float(group["weight_decay"]), bool(group["nesterov"])
            scale = float(group.get("lr_scale", 1.0))
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad if wd == 0 else p.grad.add(p, alpha=wd)
                buf = self.state[p]["momentum_buffer"]
                buf.mul_(mom).add_(g)
                d = g.add(buf * mom) if nesterov else buf
                p.sub_(d * lr, alpha=scale)
        return loss


class ScheduledAdamW(torch.optim.AdamW):
    """``torch.optim.AdamW`` with :meth:`set_schedule` (the momentum schedule does not apply) and ``lr_scale`` groups.

    Args:
        params: Parameters, or groups of them (:func:`param_groups`).
        lr: Initial learning rate.
        weight_decay: Decoupled weight decay.
    """

    def __init__(self, params: Iterable[Any], lr: float, weight_decay: float = 0.0) -> None:
        super().__init__(params, lr=lr, weight_decay=weight_decay)
        self.set_schedule(lr, 0.0)

    def set_schedule(self, lr: float, momentum: float) -> None:
        """This epoch's learning rate (times each group's ``lr_scale``); ``momentum`` is ignored (Adam's betas)."""
        for group in self.param_groups:
            group["lr"] = float(lr) * float(group.get("lr_scale", 1.0))


def param_groups(model: torch.nn.Module, scales: Mapping[str, float]) -> list[dict[str, Any]]:
    """``model``'s parameters in groups by learning-rate factor: each top-level layer named in ``scales`` gets its
    factor (``lr_scale``), every other parameter 1.0; empty groups are left out."""
    by_scale: dict[float, list[torch.nn.Parameter]] = {}
    for name, p in model.named_parameters():
        by_scale.setdefault(float(scales.get(name.split(".", 1)[0], 1.0)), []).append(p)
    return [{"params": ps, "lr_scale": s} for s, ps in sorted(by_scale.items(), key=lambda kv: -kv[0])]


def make_optimizer(
    name: str, model: torch.nn.Module, scales: Mapping[str, float], lr: float, momentum: float, cfg: Any
) -> ScheduledSGD | ScheduledAdamW:
    """The ``trainer.optimizer`` (``sgd``: Nesterov/momentum SGD, the paper's; ``adamw``) over ``model``.

    Raises:
        ValueError: An unknown optimizer name.
    """
    groups = param_groups(model, scales)
    if name == "sgd":
        return ScheduledSGD(groups, lr, momentum, bool(cfg.nesterov), float(cfg.weight_decay))
    if name == "adamw":
        return ScheduledAdamW(groups, lr, float(cfg.weight_decay))
    raise ValueError(f"trainer.optimizer must be one of {list(OPTIMIZERS)}, not {name!r}")
