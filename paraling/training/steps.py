"""Training-step runners for :func:`paraling.training.loop.fit`: eager, CUDA-graph-captured, or ``torch.compile``-d.

A step is: gather the batch's windows from the bank, mask and mix them when asked (``trainer.spec_augment``,
``trainer.mixup``; :mod:`paraling.training.augment`), forward under autocast, cross-entropy, backward, SGD step, and
add the batch loss to a running sum on the device (read once per epoch, so a step never waits for the GPU).

:class:`GraphStep` records one full-size step as a CUDA graph and replays it for every later full batch: one launch
instead of a few hundred small kernels, which is what a CNN of this size is bound by on a GPU. Learning rate,
momentum and the set of frozen layers are baked into a capture, so it is recorded again at the start of every epoch
(they change per epoch); the optimizer's momentum buffers must exist before a capture (a buffer created inside the
graph would be re-created at every replay), so the first steps, and the first step after layers are unfrozen, run
eagerly on a side stream. The last, partial batch of an epoch runs eagerly. A capture that fails falls back to eager
steps with a warning.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from paraling.data.windows import WindowBank
from paraling.training.augment import BatchAugment
from paraling.training.device import to_device

__all__ = ["EagerStep", "GraphStep", "make_step"]

log = logging.getLogger(__name__)

_WARMUP_STEPS = 3  # eager steps on a side stream before the first capture (cuBLAS/cuDNN handles, lazy state)


def prepare_batch(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """The model's input layout: channels-last when asked for (the fast path of oneDNN and cuDNN)."""
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


class EagerStep:
    """One SGD step per call, run op by op.

    Args:
        model: The CNN (on ``device``).
        opt: Its optimizer.
        bank: Window bank; batches are gathered from it.
        idx: ``(n,)`` window indices into ``bank``, on the bank's index device.
        y: ``(n,)`` class per window (same device as ``idx``).
        device: Where the model computes.
        dtype: Autocast dtype, or ``None`` for fp32.
        channels_last: Feed batches channels-last.
        forward: What computes logits from a batch (``model`` itself, or a compiled version of it).
        augment: Masking/mixup of each training batch (:class:`~paraling.training.augment.BatchAugment`), or
            ``None``.
    """

    def __init__(
        self,
        model: nn.Module,
        opt: torch.optim.Optimizer,
        bank: WindowBank,
        *,
        idx: torch.Tensor,
        y: torch.Tensor,
        device: torch.device,
        dtype: torch.dtype | None,
        channels_last: bool,
        forward: Any = None,
        augment: BatchAugment | None = None,
    ) -> None:
        self.model, self.opt, self.bank, self.idx, self.y = model, opt, bank, idx, y
        self.augment = augment
        self.device, self.dtype, self.channels_last = device, dtype, channels_last
        self.forward = forward if forward is not None else model
        self.total = torch.zeros((), device=device)
        self.n_seen = 0
        self.mode = "eager" if forward is None else "compile"

    def begin_epoch(self) -> None:
        """Reset the epoch's loss sum (in place: a captured graph keeps adding into the same tensor)."""
        self.total.zero_()
        self.n_seen = 0

    def _body(self, b: torch.Tensor) -> None:
        x = self.bank.gather(self.idx[b])
        yb = to_device(self.y[b], self.device)
        lam = None
        if self.augment is not None:
            x, lam = self.augment(x, yb)
        x = prepare_batch(x, self.channels_last)
        with torch.autocast(
            self.device.type, dtype=self.dtype or torch.float32, enabled=self.dtype is not None, cache_enabled=False
        ):
            loss = BatchAugment.loss(self.forward(x).float(), yb, lam)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.total.add_(loss.detach() * b.numel())

    def step(self, b: torch.Tensor) -> None:
        """Train on the windows at positions ``b`` of ``idx``."""
        self._body(b)
        self.n_seen += int(b.numel())

    def epoch_loss(self) -> float:
        """Mean training loss of the epoch so far (waits for the device once)."""
        return float(self.total) / max(self.n_seen, 1)


class GraphStep(EagerStep):
    """Full batches of ``batch_size`` replayed from a CUDA graph; see the module docstring."""

    def __init__(self, *args: Any, batch_size: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.device.type != "cuda":
            raise ValueError(f"CUDA graphs need a CUDA device, not {self.device}")
        self.batch_size = batch_size
        self.static_b = torch.zeros(batch_size, dtype=torch.int64, device=self.idx.device)
        self.side = torch.cuda.Stream(self.device)
        self.graph: torch.cuda.CUDAGraph | None = None
        self.warm = 0
        self.failed = False
        self.captures = 0
        self.mode = "graph"

    def begin_epoch(self) -> None:
        """Drop the capture: this epoch's learning rate, momentum and frozen layers differ from the last one's."""
        super().begin_epoch()
        self.graph = None

    def _needs_warmup(self) -> bool:
        if self.warm < _WARMUP_STEPS:
            return True
        for group in self.opt.param_groups:
            if not group.get("momentum"):
                continue
            for p in group["params"]:
                if p.requires_grad and self.opt.state.get(p, {}).get("momentum_buffer") is None:
                    return True
        return False

    def _eager_on_side_stream(self, b: torch.Tensor) -> None:
        self.side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(self.side):
            self._body(b)
        torch.cuda.current_stream(self.device).wait_stream(self.side)

    def _capture(self) -> bool:
        graph = torch.cuda.CUDAGraph()
        self.opt.zero_grad(set_to_none=True)
        try:
            with torch.cuda.graph(graph):
                self._body(self.static_b)
        except RuntimeError as exc:  # an op that cannot be captured: keep training, eagerly
            log.warning("CUDA graph capture of the training step failed (%s); training eagerly", exc)
            self.failed = True
            self.mode = "eager (graph capture failed)"
            self.opt.zero_grad(set_to_none=True)
            torch.cuda.synchronize(self.device)
            return False
        self.graph = graph
        self.captures += 1
        return True

    def step(self, b: torch.Tensor) -> None:
        """Replay the captured step for a full batch (capturing first when needed); run others eagerly."""
        if self.failed or b.numel() != self.batch_size:
            super().step(b)
            return
        if self.graph is None and self._needs_warmup():
            self._eager_on_side_stream(b)
            self.warm += 1
            self.n_seen += int(b.numel())
            return
        self.static_b.copy_(b)
        if self.graph is None and not self._capture():
            super().step(b)
            return
        if self.graph is not None:
            self.graph.replay()
            self.n_seen += int(b.numel())


def make_step(
    mode: str, model: nn.Module, opt: torch.optim.Optimizer, bank: WindowBank, batch_size: int, **inputs: Any
) -> EagerStep:
    """The runner for ``mode`` (``eager`` | ``graph`` | ``compile``, see
    :func:`~paraling.training.device.capture_mode`).

    ``inputs`` are :class:`EagerStep`'s keyword arguments (``idx``, ``y``, ``device``, ``dtype``, ``channels_last``,
    ``augment``).
    """
    if mode == "graph":
        return GraphStep(model, opt, bank, batch_size=batch_size, **inputs)
    if mode == "compile":
        return EagerStep(model, opt, bank, forward=torch.compile(model, dynamic=False), **inputs)
    return EagerStep(model, opt, bank, **inputs)
