"""Training-step runners for :func:`paraling.training.loop.fit`: eager, CUDA-graph-captured, or ``torch.compile``-d.

A step is: gather the batch's windows from the bank, mask and mix them when asked (``trainer.spec_augment``,
``trainer.mixup``; :mod:`paraling.training.augment`), forward under autocast, cross-entropy, backward, SGD step, and
add the batch loss to a running sum on the device (read once per epoch, so a step never waits for the GPU).

:class:`GraphStep` records one full-size step as a CUDA graph and replays it for every later full batch: one launch
instead of a few hundred small kernels, which is what a CNN of this size is bound by on a GPU. It is recorded once
per fit: learning rate and momentum are device tensors of :class:`~paraling.training.optim.ScheduledSGD`, updated in
place between epochs, and its momentum buffers exist from the start. Only a change of the set of trainable layers
(transfer learning's frozen epochs ending) records it again. The first steps run eagerly on a side stream (cuDNN and
cuBLAS set themselves up), as does the last, partial batch of an epoch. Where the batch comes from is chosen by
:func:`graph_input`: with the window bank on the GPU the gather is part of the graph; with the bank in host memory
(too big for this process's share of the GPU) each batch is gathered on the host and copied into fixed device buffers
*outside* the graph, which then reads them, so every replay trains on its own batch. A capture that fails falls back
to eager steps with a warning, and the mode that ran is what :attr:`EagerStep.mode` reports (the run logs it).
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from paraling.data.windows import WindowBank
from paraling.device import copy_into, same_device, to_device
from paraling.training.augment import BatchAugment

__all__ = ["EagerStep", "GraphStep", "graph_input", "make_step"]

log = logging.getLogger(__name__)

_WARMUP_STEPS = 3  # eager steps on a side stream before the first capture (cuBLAS/cuDNN handles, lazy state)


def graph_input(data: torch.device, index: torch.device, device: torch.device) -> str:
    """Where a CUDA-graph step takes its batch from: ``"bank"`` or ``"staged"``.

    Args:
        data: Where the window bank's features are (``bank.data.device``).
        index: Where its window index is (``bank.starts.device``).
        device: Where the model trains.

    Returns:
        ``"bank"`` when features and index live on the (CUDA) ``device``: the gather is recorded in the graph and
        reads the batch's indices from a fixed device buffer. Otherwise ``"staged"``: a gather recorded from host
        memory would run once, at capture, and every replay would train on that same batch; instead each batch is
        gathered on the host and copied into fixed device buffers before the replay.
    """
    on_device = same_device(data, device) and same_device(index, device)
    return "bank" if device.type == "cuda" and on_device else "staged"


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

    def _batch(self, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.bank.gather(self.idx[b]), to_device(self.y[b], self.device)

    def _train(self, x: torch.Tensor, yb: torch.Tensor, n: int) -> None:
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
        self.total.add_(loss.detach() * n)

    def _body(self, b: torch.Tensor) -> None:
        x, yb = self._batch(b)
        self._train(x, yb, int(b.numel()))

    def step(self, b: torch.Tensor) -> None:
        """Train on the windows at positions ``b`` of ``idx``."""
        self._body(b)
        self.n_seen += int(b.numel())

    def epoch_loss(self) -> float:
        """Mean training loss of the epoch so far (waits for the device once)."""
        return float(self.total) / max(self.n_seen, 1)


class GraphStep(EagerStep):
    """Full batches of ``batch_size`` replayed from one CUDA graph; see the module docstring.

    Attributes:
        source: ``"bank"`` or ``"staged"`` (:func:`graph_input`).
        captures: Graphs recorded so far (1 per fit; 2 when frozen layers are released).
        error: Why the capture failed (then :attr:`mode` says ``eager (graph capture failed)``), else ``None``.
    """

    def __init__(self, *args: Any, batch_size: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.device.type != "cuda":
            raise ValueError(f"CUDA graphs need a CUDA device, not {self.device}")
        self.batch_size = batch_size
        self.source = graph_input(self.bank.data.device, self.bank.starts.device, self.device)
        if self.source == "bank":
            self.static_b = torch.zeros(batch_size, dtype=torch.int64, device=self.idx.device)
        else:
            shape = (batch_size, self.bank.n_mels, self.bank.width)
            self.static_x = torch.zeros(shape, dtype=torch.float32, device=self.device)
            self.static_y = torch.zeros(batch_size, dtype=torch.int64, device=self.device)
        self.side = torch.cuda.Stream(self.device)
        self.graph: torch.cuda.CUDAGraph | None = None
        self.key: tuple[bool, ...] | None = None
        self.warm = 0
        self.failed = False
        self.error: str | None = None
        self.captures = 0
        self.mode = "graph" if self.source == "bank" else "graph (staged batches)"

    def _trainable(self) -> tuple[bool, ...]:
        return tuple(p.requires_grad for p in self.model.parameters())

    def _eager_on_side_stream(self, b: torch.Tensor) -> None:
        self.side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(self.side):
            self._body(b)
        torch.cuda.current_stream(self.device).wait_stream(self.side)

    def _feed(self, b: torch.Tensor) -> None:
        """Put batch ``b`` where the graph reads it (outside the graph)."""
        if self.source == "bank":
            self.static_b.copy_(b)
        else:
            copy_into(self.static_x, self.bank.gather_raw(self.idx[b]))
            copy_into(self.static_y, self.y[b])

    def _graph_body(self) -> None:
        if self.source == "bank":
            x, yb = self.bank.gather(self.static_b), self.y[self.static_b]
        else:
            x, yb = self.bank.finish(self.static_x), self.static_y
        self._train(x, yb, self.batch_size)

    def _capture(self, key: tuple[bool, ...]) -> bool:
        graph = torch.cuda.CUDAGraph()
        self.opt.zero_grad(set_to_none=True)
        try:
            with torch.cuda.graph(graph):
                self._graph_body()
        except RuntimeError as exc:  # an op that cannot be captured: keep training, eagerly
            log.warning("CUDA graph capture of the training step failed (%s); training eagerly", exc)
            self.failed = True
            self.error = " ".join(str(exc).split())[:300]
            self.mode = "eager (graph capture failed)"
            self.graph = None
            self.opt.zero_grad(set_to_none=True)
            torch.cuda.synchronize(self.device)
            return False
        self.graph, self.key = graph, key
        self.captures += 1
        return True

    def step(self, b: torch.Tensor) -> None:
        """Replay the recorded step for a full batch (recording it first when needed); run others eagerly."""
        if self.failed or b.numel() != self.batch_size:
            super().step(b)
            return
        key = self._trainable()
        if self.graph is None or key != self.key:
            if self.warm < _WARMUP_STEPS:
                self._eager_on_side_stream(b)
                self.warm += 1
                self.n_seen += int(b.numel())
                return
            self._feed(b)
            if not self._capture(key):
                super().step(b)
                return
        else:
            self._feed(b)
        assert self.graph is not None
        self.graph.replay()
        self.n_seen += int(b.numel())


def make_step(
    mode: str, model: nn.Module, opt: torch.optim.Optimizer, bank: WindowBank, batch_size: int, **inputs: Any
) -> EagerStep:
    """The runner for ``mode`` (``eager`` | ``graph`` | ``compile``, see
    :func:`~paraling.device.capture_mode`).

    ``inputs`` are :class:`EagerStep`'s keyword arguments (``idx``, ``y``, ``device``, ``dtype``, ``channels_last``,
    ``augment``).
    """
    if mode == "graph":
        return GraphStep(model, opt, bank, batch_size=batch_size, **inputs)
    if mode == "compile":
        return EagerStep(model, opt, bank, forward=torch.compile(model, dynamic=False), **inputs)
    return EagerStep(model, opt, bank, **inputs)
