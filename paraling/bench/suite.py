"""The benchmark suite: runs every figure, prints value / reference / ratio, writes JSON, logs to MLflow."""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from paraling.bench.common import Figure, matmul_peak_gflops, paper_cnn, train_flops_split
from paraling.ops.cpu import bf16_hardware, cpu_model
from paraling.training.malloc import keep_freed_memory

__all__ = ["run_suite"]


@dataclass(frozen=True)
class Sizes:
    """How much work each figure does.

    Attributes:
        train_windows: Windows per training measurement.
        infer_windows: Windows per inference measurement.
        feature_files: Audio files for the feature-cache figure.
        mem_sizes: The two corpus sizes (utterances) whose memory difference gives the slope.
        uar: ``(speakers, folds, epochs, windows per epoch or None)`` of the UAR check.
        prune: ``(trials or None, demo speakers, windows per epoch or None)`` of the pruning figure.
        ssl: ``(files, minutes)``: 3-s files of the encoder extraction figure, length of the memory figure's recording.
    """

    train_windows: int
    infer_windows: int
    feature_files: int
    mem_sizes: tuple[int, int]
    uar: tuple[int, int, int, int | None]
    prune: tuple[int | None, int, int | None]
    ssl: tuple[int, float]


QUICK = Sizes(6_000, 20_000, 60, (100, 1000), (10, 2, 3, 6_000), (6, 12, 4_000), (20, 10.0))
FULL = Sizes(
    40_000, 100_000, 300, (200, 2000), (30, 5, 8, None), (None, 30, None), (100, 10.0)
)  # prune: the demo study as shipped

Section = tuple[list[Figure], dict[str, Any]]


def _fmt(f: Figure) -> str:
    return f"{f.name:<34} {f.value:>12.1f} {f.reference:>12.1f} {f.unit:<16} x{f.ratio:>6.2f}  {f.target:<10} {f.note}"


def _train(p: Sizes, precision: str, batch_size: int) -> Section:
    """(a) training windows/s against the naive loop, (b) GFLOP/s against the matmul peak (and fp32's)."""
    from paraling.bench.speed import fast_train, make_bank, naive_train

    bank, labels = make_bank(p.train_windows * 2)
    naive = naive_train(bank, labels, batch_size, p.train_windows)
    fast = fast_train(bank, labels, batch_size, p.train_windows, precision).windows_per_s
    split = train_flops_split(paper_cnn())  # per window: convolutions, FC matmuls
    flops = split["conv"] + split["matmul"]
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    peak = matmul_peak_gflops(dtype)
    achieved = fast * flops / 1e9
    figures = [
        Figure(
            "(a) training windows/s",
            fast,
            naive,
            "windows/s",
            fast / naive,
            ">= 2.5x",
            "reference: per-window Dataset + DataLoader, fp32 NCHW, torch ops",
        ),
        Figure(
            "(b) training GFLOP/s vs matmul peak",
            achieved,
            peak,
            "GFLOP/s",
            achieved / peak,
            ">= 0.50",
            f"model FLOPs (dense): {flops / 1e6:.1f} MFLOP/window fwd+bwd; {dtype} peak",
        ),
    ]
    keys: dict[str, Any] = {
        "train_windows_per_s": fast,
        "naive_train_windows_per_s": naive,
        "train_speedup_vs_naive": fast / naive,
        "train_fraction_of_matmul_peak": achieved / peak,
        "mflop_per_window": flops / 1e6,
        "matmul_peak_gflops": peak,
    }
    if precision != "fp32":  # the same two figures for plain fp32, so both precisions are on record
        more, more_keys = _train_fp32(p, bank, labels, batch_size, naive, split, (achieved, peak))
        figures += more
        keys |= more_keys
    return figures, keys


def _train_fp32(
    p: Sizes, bank: Any, labels: Any, batch_size: int, naive: float, split: dict[str, float], got: tuple[float, float]
) -> Section:
    """The fp32 training figure, and the reduced-precision run against its per-layer-precision peak."""
    from paraling.bench.speed import fast_train

    achieved, peak = got
    flops = split["conv"] + split["matmul"]
    fast32 = fast_train(bank, labels, batch_size, p.train_windows, "fp32").windows_per_s
    peak32 = matmul_peak_gflops(torch.float32)
    got32 = fast32 * flops / 1e9
    # The fast path runs the convolutions in bf16 and the FC layers in fp32 (WindowCNN keeps them so): the peak it
    # could reach is each kind's FLOPs at its own precision's peak.
    mixed = flops / (split["conv"] / peak + split["matmul"] / peak32)
    figures = [
        Figure(
            "(b) same, fp32 (channels-last)",
            got32,
            peak32,
            "GFLOP/s",
            got32 / peak32,
            ">= 0.50",
            f"{fast32:.0f} windows/s = x{fast32 / naive:.2f} naive; torch.float32 peak",
        ),
        Figure(
            "(b) bf16 vs per-layer-precision peak",
            achieved,
            mixed,
            "GFLOP/s",
            achieved / mixed,
            "(info)",
            f"conv {split['conv'] / 1e6:.1f} MFLOP at the bf16 peak, FC {split['matmul'] / 1e6:.1f} at fp32's",
        ),
    ]
    keys = {
        "train_speedup_vs_naive_fp32": fast32 / naive,
        "train_fraction_of_matmul_peak_fp32": got32 / peak32,
        "matmul_peak_gflops_fp32": peak32,
        "train_fraction_of_mixed_peak": achieved / mixed,
        "mixed_peak_gflops": mixed,
    }
    return figures, keys


def _infer(p: Sizes, precision: str, batch_size: int) -> Section:
    """(c) inference windows/s against the naive eval loop."""
    from paraling.bench.speed import fast_infer, make_bank, naive_infer

    bank, labels = make_bank(p.infer_windows)
    naive = naive_infer(bank, labels, 2048, p.infer_windows)
    fast = fast_infer(bank, 2048, p.infer_windows, precision)
    note = "reference: per-window DataLoader eval loop, fp32, torch ops"
    figure = Figure("(c) inference windows/s", fast, naive, "windows/s", fast / naive, ">= 3x", note)
    return [figure], {"infer_speedup_vs_naive": fast / naive}


def _features(p: Sizes, precision: str, batch_size: int) -> Section:
    """(d) audio seconds per second of the feature cache, warm against cold."""
    from paraling.bench.io import feature_speed

    fs = feature_speed(p.feature_files)
    figure = Figure(
        "(d) features audio-s/s cached vs cold",
        fs["cached_audio_s_per_s"],
        fs["cold_audio_s_per_s"],
        "audio s / s",
        fs["speedup"],
        ">= 20x",
        f"cached = stat + memory-mapped pack; per-file entries x{fs['entry_speedup']:.1f}",
    )
    keys = {
        "feature_cache_speedup": fs["speedup"],
        "feature_entry_cache_speedup": fs["entry_speedup"],
        "feature_cold_audio_s_per_s": fs["cold_audio_s_per_s"],
    }
    return [figure], keys


def _sweep(p: Sizes, precision: str, batch_size: int) -> Section:
    """(e) the sweep's bookkeeping per trial against a 60-s trial."""
    from paraling.bench.io import sweep_overhead

    so = sweep_overhead()
    note = "compose + Optuna journal + MLflow logging"
    figure = Figure(
        "(e) sweep bookkeeping per trial", so["overhead_s"], 60.0, "s vs 60 s trial", so["fraction"], "<= 0.05", note
    )
    return [figure], {"sweep_overhead_fraction": so["fraction"]}


def _memory(p: Sizes, precision: str, batch_size: int) -> Section:
    """(f) peak anonymous memory per 1,000 utterances against one float32 copy of their windows."""
    from paraling.bench.io import peak_memory

    pm = peak_memory(p.mem_sizes)
    copy = pm["window_copy_mb_per_1000_utts"]
    figure = Figure(
        "(f) peak memory per 1,000 utterances",
        pm["anon_mb_per_1000_utts"],
        copy,
        "MB (ref: windows)",
        pm["anon_mb_per_1000_utts"] / copy,
        "linear, << 1",
        f"anonymous memory; ref = one float32 copy of all windows; RSS incl. mapped files "
        f"{pm['mb_per_1000_utts']:.0f} MB/1000; process {pm['anon_large_mb']:.0f} MB; "
        f"{pm['utt_seconds']:.0f}-s utterances; sizes {p.mem_sizes}",
    )
    # The headline key is the figure printed above: the anonymous part of the resident set (RssAnon), which has to
    # fit in RAM. The whole RSS also counts pages of mapped files (the pack, torch's shared libraries) that the
    # kernel can drop; its peak can be set by a fixed spike and then reads a slope of 0 (seen on a CPU machine with
    # torch's CUDA build), so it is kept beside it, not in its place.
    keys = {
        "peak_rss_mb_per_1000_utts": pm["anon_mb_per_1000_utts"],
        "peak_anon_mb_per_1000_utts": pm["anon_mb_per_1000_utts"],
        "peak_rss_incl_mapped_mb_per_1000_utts": pm["mb_per_1000_utts"],
        "peak_rss_mb": pm,
    }
    return [figure], keys


def _uar(p: Sizes, precision: str, batch_size: int) -> Section:
    """(g) the demo's UAR on the fast path against fp32."""
    from paraling.bench.accuracy import fast_path_uar

    spk, folds, epochs, wpe = p.uar
    ua = fast_path_uar(spk, folds, epochs, wpe)
    figure = Figure(
        "(g) demo UAR fast path vs fp32",
        ua["uar_fast"],
        ua["uar_fp32"],
        "UAR",
        ua["uar_fast"] / max(ua["uar_fp32"], 1e-9),
        "within noise",
        f"delta {ua['delta']:+.3f}, fold std {ua['fold_std_fp32']:.3f}; {spk} speakers, {folds} folds, {epochs} epochs",
    )
    return [figure], {"fast_path_uar_delta": ua["delta"], "fast_path_uar": ua}


def _prune(p: Sizes, precision: str, batch_size: int) -> Section:
    """(h) epochs a pruned sweep trains against the same sweep unpruned."""
    from paraling.bench.sweep_efficiency import sweep_pruning

    trials, spk, wpe = p.prune
    sp = sweep_pruning(trials, spk, wpe)
    figure = Figure(
        "(h) sweep epochs, pruned vs not",
        sp["pruned_epochs"],
        sp["unpruned_epochs"],
        "epochs trained",
        sp["epoch_fraction"],
        "<= 0.50",
        f"best {sp['pruned_best']:.3f} vs {sp['unpruned_best']:.3f} (delta {sp['best_delta']:+.3f}, fold std "
        f"{sp['unpruned_fold_std']:.3f}); {sp['pruned_pruned']:.0f} of {sp['pruned_trials']:.0f} pruned; "
        f"{sp['pruned_seconds']:.0f} s vs {sp['unpruned_seconds']:.0f} s",
    )
    keys = {
        "sweep_pruned_epoch_fraction": sp["epoch_fraction"],
        "sweep_pruned_best_delta": sp["best_delta"],
        "sweep_pruning": sp,
    }
    return [figure], keys


def _ssl(p: Sizes, precision: str, batch_size: int) -> Section:
    """(i) encoder extraction speed against the documented per-file loop; (j) peak memory on a long recording
    against one chunk's (a tiny random encoder: paraling's path around the encoder is measured)."""
    from paraling.bench.ssl_speed import ssl_memory, ssl_speed

    files, minutes = p.ssl
    sp = ssl_speed(files)
    speed = Figure(
        "(i) ssl extraction, first pass",
        sp["cold_audio_s_per_s"],
        sp["naive_audio_s_per_s"],
        "audio s/s",
        sp["cold_vs_naive"],
        ">= 0.8",
        f"ref: per-file transformers loop; every later trial reads the cache at {sp['cached_audio_s_per_s']:.0f} "
        f"audio s/s (x{sp['cached_vs_naive']:.0f}); {files} files of 3 s, tiny wav2vec2",
    )
    mem = ssl_memory(minutes)
    work_long, work_chunk = mem["long_mb"] - mem["long_output_mb"], mem["chunk_mb"] - mem["chunk_output_mb"]
    memory = Figure(
        f"(j) ssl peak memory, {minutes:.0f}-min file",
        work_long,
        work_chunk,
        "MB (ref: 1 chunk)",
        mem["work_ratio"],
        "<= 3",
        f"working memory above the output ({mem['long_output_mb']:.0f} MB, all layers); 20-s chunks, 1 s context",
    )
    return [speed, memory], {
        "ssl_cold_vs_naive": sp["cold_vs_naive"],
        "ssl_memory_ratio": mem["work_ratio"],
        "ssl": sp | mem,
    }


#: The figures by the name ``--skip`` takes, in the order they run.
SECTIONS: dict[str, Callable[[Sizes, str, int], Section]] = {
    "train": _train,
    "infer": _infer,
    "features": _features,
    "sweep": _sweep,
    "memory": _memory,
    "uar": _uar,
    "prune": _prune,
    "ssl": _ssl,
}


def _header(quick: bool, precision: str, batch_size: int) -> dict[str, Any]:
    return {
        "quick": quick,
        "precision": precision,
        "batch_size": batch_size,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
        "cpu": cpu_model(),
        "bf16_hardware": bf16_hardware(),
    }


def run_suite(
    quick: bool = True, precision: str = "auto", batch_size: int = 512, skip: tuple[str, ...] = (), log: Any = print
) -> dict[str, Any]:
    """Run the benchmarks (every :data:`SECTIONS` name not in ``skip``); return the JSON-able result
    (``figures`` plus the headline keys)."""
    if precision == "auto":  # what training uses by default on this machine
        from paraling.device import resolve_device, resolve_precision

        precision = "bf16" if resolve_precision("auto", resolve_device("cpu")) is not None else "fp32"
    keep_freed_memory()  # for the naive references too: the ratios then measure the training loop, not malloc
    result = _header(quick, precision, batch_size)
    log(
        f"paraling bench ({'quick' if quick else 'full'}; {torch.get_num_threads()} threads; fast path "
        f"precision={precision}, channels-last, batch {batch_size})"
    )
    log(f"cpu: {result['cpu']}; bfloat16 in hardware: {result['bf16_hardware']}")
    log(f"{'figure':<34} {'paraling':>12} {'reference':>12} {'unit':<16} {'ratio':>7}  {'target':<10} note")
    t_all = time.perf_counter()
    figures: list[Figure] = []
    for name, section in SECTIONS.items():
        if name in skip:
            continue
        got, keys = section(QUICK if quick else FULL, precision, batch_size)
        for f in got:
            log(_fmt(f))
        figures += got
        result |= keys
    result["figures"] = [asdict(f) for f in figures]
    result["seconds"] = time.perf_counter() - t_all
    log(f"total {result['seconds']:.0f} s")
    return result


def write_json(result: dict[str, Any], path: str | Path) -> None:
    """Write the result as JSON (atomic)."""
    from paraling.data.manifest import atomic_write_text

    atomic_write_text(path, json.dumps(result, indent=2, default=float))


def log_to_mlflow(result: dict[str, Any], uri: str | None = None) -> str | None:
    """Log the headline numbers as metrics of an MLflow run in experiment ``paraling-bench``."""
    from paraling.tracking.tracker import RunTracker

    tracker = RunTracker("paraling-bench", uri, "bench-quick" if result["quick"] else "bench-full")
    with tracker.running():
        tracker.log_params({k: result[k] for k in ("quick", "precision", "batch_size", "threads", "torch")})
        tracker.log_metrics(
            {k: float(v) for k, v in result.items() if isinstance(v, int | float) and not isinstance(v, bool)}
        )
        tracker.log_text(json.dumps(result, indent=2, default=float), "bench.json")
    return tracker.run_id
