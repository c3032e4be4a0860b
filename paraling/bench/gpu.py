"""``paraling bench --device cuda``: figures (a)-(c) on one GPU, the capture modes, the paper-scale epoch.

Every reference is measured on the same GPU in the same process: the naive loop is the textbook per-window
``Dataset``/``DataLoader`` feeding a model on the GPU (fp32, NCHW, plain torch ops, one host-to-device copy per batch),
and the peak is a large bf16 matmul timed with CUDA events.
"""

from __future__ import annotations

import functools
import time
from dataclasses import asdict
from typing import Any

import torch
from omegaconf import OmegaConf

from paraling.bench.common import Figure, paper_cnn, synthetic_bank, train_flops_split
from paraling.config_groups import CNNConfig
from paraling.device import resolve_precision
from paraling.errors import ParalingError

__all__ = [
    "CUDA_FULL",
    "CUDA_QUICK",
    "capture_figures",
    "gpu_matmul_peak_gflops",
    "paper_model",
    "run_cuda_suite",
]

CUDA_QUICK = {"train_windows": 60_000, "naive_windows": 30_000, "infer_windows": 300_000, "paper_windows": 190_000}
CUDA_FULL = {"train_windows": 300_000, "naive_windows": 100_000, "infer_windows": 2_000_000, "paper_windows": 190_000}
PAPER = {"n_mels": 60, "width": 18, "n_blocks": 5}  # conf/experiment/paper.yaml


def gpu_matmul_peak_gflops(device: torch.device, dtype: torch.dtype = torch.bfloat16, n: int = 8192) -> float:
    """Best GFLOP/s of ``n``x``n`` matmuls on ``device`` over three rounds of 20, timed with CUDA events."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(5):
        a @ b
    best = 0.0
    for _ in range(3):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(20):
            a @ b
        end.record()
        end.synchronize()
        best = max(best, 20 * 2 * n**3 / (start.elapsed_time(end) / 1e3) / 1e9)
    return best


def paper_model(n_classes: int = 7) -> torch.nn.Module:
    """The CNN of ``experiment=paper``: five conv blocks on 60 x 18 windows, 2 x 500 FC."""
    from paraling.models.cnn import build_model

    cfg = OmegaConf.structured(CNNConfig(n_blocks=PAPER["n_blocks"]))
    return build_model(cfg, PAPER["n_mels"], PAPER["width"], n_classes)


def _bank(n_windows: int, n_mels: int, width: int, device: torch.device) -> tuple[Any, Any]:
    frames = 300
    per = (frames - width) // 2 + 1
    bank, labels = synthetic_bank(max(2, n_windows // per + 1), frames, n_mels=n_mels, width=width)
    return bank.to(device), labels


def capture_figures(asked: dict[str, Any], naive: float) -> tuple[list[Figure], float | None]:
    """Figure (a) and one line per capture mode, each labelled by the mode that *ran*.

    Args:
        asked: Per mode asked for (``eager``, ``graph``, ``compile``), a
            :class:`~paraling.bench.speed.TrainSpeed` or the exception it raised.
        naive: The reference loop's windows/s.

    Returns:
        ``(figures, headline windows/s)``; the headline is ``capture=graph``'s when the graph ran, else the fastest
        mode that ran, else ``None`` (every mode failed: figure (a) says so instead of the bench crashing).
    """
    ran = {m: r for m, r in asked.items() if not isinstance(r, BaseException)}
    figures: list[Figure] = []
    for mode, r in asked.items():
        if isinstance(r, BaseException):
            figures.append(
                Figure(
                    f"(a) capture={mode}",
                    float("nan"),
                    naive,
                    "windows/s",
                    float("nan"),
                    "(info)",
                    f"failed: {type(r).__name__}: {' '.join(str(r).split())[:160]}",
                )
            )
    if not ran:
        figures.insert(
            0,
            Figure(
                "(a) training windows/s (GPU)",
                float("nan"),
                naive,
                "windows/s",
                float("nan"),
                ">= 10x",
                "FAILED: every capture mode failed",
            ),
        )
        return figures, None
    graph = ran.get("graph")
    head_mode = (
        "graph"
        if graph is not None and graph.capture.startswith("graph")
        else max(ran, key=lambda m: ran[m].windows_per_s)
    )
    head = ran[head_mode].windows_per_s
    figures.insert(
        0,
        Figure(
            "(a) training windows/s (GPU)",
            head,
            naive,
            "windows/s",
            head / naive,
            ">= 10x",
            f"step as run: {ran[head_mode].capture}; reference: per-window DataLoader, fp32, same GPU",
        ),
    )
    fastest = max(ran, key=lambda m: ran[m].windows_per_s)
    for mode, r in ran.items():
        label = r.capture if r.capture == mode else f"{r.capture} (asked: {mode})"
        note = "fastest" if mode == fastest else ""
        figures.append(
            Figure(f"(a) capture={label}", r.windows_per_s, head, "windows/s", r.windows_per_s / head, "(info)", note)
        )
    return figures, head


def run_cuda_suite(quick: bool = True, precision: str = "auto", batch_size: int = 512, log: Any = print) -> dict:
    """Run the GPU figures; return the JSON-able result (``figures`` plus headline keys)."""
    if not torch.cuda.is_available():
        raise ParalingError("paraling bench --device cuda: no CUDA device is visible here; run it on a GPU machine")
    device = torch.device("cuda")
    p = CUDA_QUICK if quick else CUDA_FULL
    if precision == "auto":
        precision = "bf16" if resolve_precision("auto", device) is not None else "fp32"
    props = torch.cuda.get_device_properties(device)
    result: dict[str, Any] = {
        "device": "cuda",
        "gpu": props.name,
        "gpu_capability": f"{props.major}.{props.minor}",
        "gpu_memory_gb": props.total_memory / 2**30,
        "quick": quick,
        "precision": precision,
        "batch_size": batch_size,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
    }
    log(
        f"paraling bench --device cuda ({'quick' if quick else 'full'}; {props.name}, capability {props.major}."
        f"{props.minor}; fast path precision={precision}, batch {batch_size})"
    )
    t_all = time.perf_counter()
    figures: list[Figure] = []
    modes = ("eager", "graph") if quick else ("eager", "graph", "compile")  # compiling takes minutes
    for section in (functools.partial(_cuda_train, modes=modes), _cuda_infer, _cuda_paper):
        got, keys = section(p, precision, batch_size, device, log)
        figures += got
        result.update(keys)
    for f in figures:
        log(f"{f.name:<36} {f.value:>14.1f} {f.reference:>14.1f} {f.unit:<16} x{f.ratio:>7.2f}  {f.target:<8} {f.note}")
    result["figures"] = [asdict(f) for f in figures]
    result["seconds"] = time.perf_counter() - t_all
    log(f"total {result['seconds']:.0f} s")
    return result


def _cuda_train(
    p: dict[str, int],
    precision: str,
    batch_size: int,
    device: torch.device,
    log: Any,
    modes: tuple[str, ...] = ("eager", "graph"),
) -> tuple[list[Figure], dict[str, Any]]:
    """(a) training windows/s per capture mode in ``modes`` against the naive loop, (b) GFLOP/s against the bf16
    peak."""
    from paraling.bench.speed import fast_train, naive_train

    bank, labels = _bank(p["train_windows"] * 2, 40, 11, device)
    naive = naive_train(bank, labels, batch_size, p["naive_windows"], device=device)
    asked: dict[str, Any] = {}
    for mode in modes:
        try:
            asked[mode] = fast_train(
                bank, labels, batch_size, p["train_windows"], precision, device=device, capture=mode
            )
        except Exception as exc:  # a mode that does not work on this machine is reported, not fatal
            log(f"capture={mode}: failed ({type(exc).__name__}: {exc})")
            asked[mode] = exc
    figures, head = capture_figures(asked, naive)
    fast = head if head is not None else float("nan")
    speeds = {m: r.windows_per_s for m, r in asked.items() if not isinstance(r, BaseException)}
    split = train_flops_split(paper_cnn())
    flops = split["conv"] + split["matmul"]
    peak = gpu_matmul_peak_gflops(device, torch.bfloat16)
    achieved = fast * flops / 1e9
    figures.append(
        Figure(
            "(b) training GFLOP/s vs bf16 peak",
            achieved,
            peak,
            "GFLOP/s",
            achieved / peak,
            "(info)",
            f"model FLOPs (dense): {flops / 1e6:.1f} MFLOP/window fwd+bwd; 8192^2 bf16 matmul peak",
        )
    )
    keys = {
        "train_windows_per_s": fast,
        "naive_train_windows_per_s": naive,
        "train_speedup_vs_naive": fast / naive,
        "capture_windows_per_s": speeds,
        "capture_ran_as": {m: r.capture for m, r in asked.items() if not isinstance(r, BaseException)},
        "fastest_capture": max(speeds, key=lambda m: speeds[m]) if speeds else None,
        "failed": [] if head is not None else ["(a) every capture mode failed"],
        "matmul_peak_gflops_bf16": peak,
        "train_fraction_of_matmul_peak": achieved / peak,
    }
    return figures, keys


def _cuda_infer(
    p: dict[str, int], precision: str, batch_size: int, device: torch.device, log: Any
) -> tuple[list[Figure], dict[str, Any]]:
    """(c) inference windows/s in the GPU's evaluation batches against the naive eval loop."""
    from paraling.bench.speed import fast_infer, naive_infer

    bank, labels = _bank(p["infer_windows"], 40, 11, device)
    naive_i = naive_infer(bank, labels, 2048, min(p["infer_windows"], 100_000), device=device)
    fast_i = fast_infer(bank, 32768, p["infer_windows"], precision, device=device)
    figure = Figure(
        "(c) inference windows/s (GPU)",
        fast_i,
        naive_i,
        "windows/s",
        fast_i / naive_i,
        ">= 3x",
        "batches of 32768 (trainer.eval_batch_size_gpu); reference: DataLoader eval loop, fp32",
    )
    return [figure], {"infer_windows_per_s": fast_i, "infer_speedup_vs_naive": fast_i / naive_i}


def _cuda_paper(
    p: dict[str, int], precision: str, batch_size: int, device: torch.device, log: Any
) -> tuple[list[Figure], dict[str, Any]]:
    """(p) seconds per epoch of the paper-scale model (``experiment=paper``) against a 0.5-s target."""
    from paraling.bench.speed import fast_train

    bank, labels = _bank(p["paper_windows"], PAPER["n_mels"], PAPER["width"], device)
    n = bank.n_windows
    paper = fast_train(bank, labels, 256, n, precision, device=device, model=paper_model())
    wps = paper.windows_per_s
    epoch_s = n / wps
    figure = Figure(
        "(p) paper-scale epoch seconds",
        epoch_s,
        0.5,
        "s (ref: target)",
        epoch_s / 0.5,
        "<= 1.0",
        f"experiment=paper model (5 blocks, 60x18), {n} windows, batch 256, {wps:.0f} windows/s, {paper.capture}",
    )
    return [figure], {"paper_epoch_seconds": epoch_s, "paper_windows": n, "paper_windows_per_s": wps}
