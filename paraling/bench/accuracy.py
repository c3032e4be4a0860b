"""(g) Does the fast path cost accuracy? Demo-corpus UAR of bf16 + channels-last next to plain fp32."""

from __future__ import annotations

import tempfile

from paraling.config import compose

__all__ = ["fast_path_uar"]


def fast_path_uar(
    n_speakers: int,
    folds: int,
    epochs: int,
    windows_per_epoch: int | None,
    cache_dir: str = ".cache/paraling",
    demo_dir: str = "data/bench-demo",
) -> dict[str, float]:
    """Train the same folds and seeds twice (fp32 NCHW vs bf16 channels-last) and compare out-of-fold UAR."""
    from paraling.pipeline.experiment import run_experiment

    out = {}
    for name, precision, cl in (("fp32", "fp32", False), ("fast", "bf16", True)):
        cfg = compose([f"corpus.path={demo_dir}-{n_speakers}", f"corpus.demo_speakers={n_speakers}"])
        cfg.cv.folds, cfg.trainer.epochs, cfg.trainer.max_windows_per_epoch = folds, epochs, windows_per_epoch
        cfg.trainer.precision, cfg.trainer.channels_last = precision, cl
        cfg.tracking.enabled, cfg.progress, cfg.cache_dir = False, "never", cache_dir
        with tempfile.TemporaryDirectory():
            res = run_experiment(cfg)
        out[f"uar_{name}"] = res.uar
        out[f"fold_std_{name}"] = res.metrics["uar_fold_std"]
        out[f"seconds_{name}"] = res.seconds
    out["delta"] = out["uar_fast"] - out["uar_fp32"]
    return out
