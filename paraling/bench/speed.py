"""Training and inference throughput of paraling's loop against a naive per-window Dataset/DataLoader loop."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from omegaconf import OmegaConf
from torch.utils.data import DataLoader, Dataset

from paraling.bench.common import paper_cnn, synthetic_bank
from paraling.config import TrainerConfig
from paraling.data.windows import WindowBank
from paraling.device import synchronize, to_numpy
from paraling.training.loop import FitOptions, fit, predict_windows

__all__ = ["NaiveWindows", "TrainSpeed", "fast_infer", "fast_train", "naive_infer", "naive_model", "naive_train"]


@dataclass(frozen=True)
class TrainSpeed:
    """What :func:`fast_train` measured: windows/s and the training step that actually ran (``capture`` may say
    ``eager (graph capture failed)`` where ``graph`` was asked for)."""

    windows_per_s: float
    capture: str


class NaiveWindows(Dataset):
    """The textbook way: one Python object per window, each ``__getitem__`` slicing a numpy array."""

    def __init__(self, bank: WindowBank, labels: np.ndarray) -> None:
        self.items = []
        data = to_numpy(bank.data)
        for k, (s, u) in enumerate(zip(bank.starts.tolist(), bank.utt.tolist(), strict=True)):
            self.items.append((s, int(labels[u]), k))
        self.data, self.width = data, bank.width

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        s, y, _ = self.items[i]
        return torch.from_numpy(self.data[s : s + self.width].T.copy()).unsqueeze(0), y


def naive_model(n_mels: int, width: int) -> torch.nn.Module:
    """The reference loops' model: the same CNN and weights, on plain torch ops (no fused masks, no native kernel)."""
    model = paper_cnn(n_mels, width)
    model.kernels = "plain"
    return model


def naive_train(
    bank: WindowBank,
    labels: np.ndarray,
    batch_size: int,
    n_windows: int,
    seed: int = 0,
    device: torch.device | None = None,
) -> float:
    """Windows/s of a plain fp32 NCHW loop (DataLoader, SGD+Nesterov, CE, torch ops) over ``n_windows`` windows.

    On a GPU the model computes there and each batch the DataLoader assembles on the host is copied over, as the
    textbook loop does.
    """
    device = device or torch.device("cpu")
    torch.manual_seed(seed)
    model = naive_model(bank.n_mels, bank.width).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    loader = DataLoader(NaiveWindows(bank, labels), batch_size=batch_size, shuffle=True)
    model.train()
    seen, t0 = 0, 0.0
    for i, (x, y) in enumerate(loader):
        if i == 2:  # warm-up batches excluded
            synchronize(device)
            t0, seen = time.perf_counter(), 0
        loss = torch.nn.functional.cross_entropy(model(x.to(device)), y.to(device))
        opt.zero_grad()
        loss.backward()
        opt.step()
        seen += len(y)
        if seen >= n_windows and i > 2:
            break
    synchronize(device)
    return seen / (time.perf_counter() - t0)


def fast_train(
    bank: WindowBank,
    labels: np.ndarray,
    batch_size: int,
    n_windows: int,
    precision: str = "fp32",
    channels_last: bool = True,
    seed: int = 0,
    device: torch.device | None = None,
    capture: str = "auto",
    model: torch.nn.Module | None = None,
) -> TrainSpeed:
    """Windows/s of :func:`paraling.training.loop.fit` (one epoch of ``n_windows`` windows, no validation), and the
    step mode that ran.

    ``bank`` must already be where it is meant to be (``bank.to(device)``); ``model`` defaults to :func:`paper_cnn`.
    """
    torch.manual_seed(seed)
    model = model if model is not None else paper_cnn(bank.n_mels, bank.width)
    cfg = OmegaConf.structured(
        TrainerConfig(
            epochs=1,
            batch_size=batch_size,
            precision=precision,
            channels_last=channels_last,
            max_windows_per_epoch=n_windows,
            checkpoint=False,
            capture=capture,
        )
    )
    idx = torch.arange(bank.n_windows)
    y = torch.from_numpy(labels[to_numpy(bank.utt)])
    # warm-up: one untimed epoch of the same size, so that one-time costs (oneDNN primitives and allocations for
    # each batch shape, the epoch's last partial batch included, CUDA context and kernels, compilation) are not in
    # the timed one, as in a long run
    fit(model, bank, idx, y, None, cfg, FitOptions(device=device))
    res = fit(model, bank, idx, y, None, cfg, FitOptions(device=device))
    return TrainSpeed(res.windows_per_second, res.capture)


def naive_infer(
    bank: WindowBank, labels: np.ndarray, batch_size: int, n_windows: int, device: torch.device | None = None
) -> float:
    """Windows/s of a plain eval loop over a per-window DataLoader (posteriors back on the host, as a user needs)."""
    device = device or torch.device("cpu")
    model = naive_model(bank.n_mels, bank.width).to(device).eval()
    loader = DataLoader(NaiveWindows(bank, labels), batch_size=batch_size, shuffle=False)
    seen, t0 = 0, time.perf_counter()
    with torch.no_grad():
        for x, _ in loader:
            to_numpy(torch.softmax(model(x.to(device)), 1))
            seen += len(x)
            if seen >= n_windows:
                break
    return seen / (time.perf_counter() - t0)


def fast_infer(
    bank: WindowBank,
    batch_size: int,
    n_windows: int,
    precision: str = "fp32",
    channels_last: bool = True,
    device: torch.device | None = None,
) -> float:
    """Windows/s of :func:`paraling.training.loop.predict_windows` (``bank`` already placed with
    ``bank.to(device)``)."""
    device = device or torch.device("cpu")
    model = paper_cnn(bank.n_mels, bank.width).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    dtype = torch.bfloat16 if precision == "bf16" else None
    idx = torch.arange(min(n_windows, bank.n_windows))
    predict_windows(model, bank, idx[: 2 * batch_size], batch_size, device, dtype, channels_last)
    t0 = time.perf_counter()
    predict_windows(model, bank, idx, batch_size, device, dtype, channels_last)
    return len(idx) / (time.perf_counter() - t0)


def make_bank(n_windows: int, seed: int = 0) -> tuple[WindowBank, np.ndarray]:
    """A bank holding about ``n_windows`` windows (300-frame utterances, width 11, shift 2)."""
    per = (300 - 11) // 2 + 1
    return synthetic_bank(max(2, n_windows // per + 1), 300, seed=seed)
