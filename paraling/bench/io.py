"""Feature extraction cold vs cached, sweep bookkeeping overhead, and peak memory per 1,000 utterances."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

__all__ = ["feature_speed", "peak_memory", "sweep_overhead", "write_wavs"]


def write_wavs(folder: Path, n: int, seconds: float, seed: int = 0) -> list[Path]:
    """``n`` speech-like 16 kHz WAV files (noise bursts with a pitch), returned as paths."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(16000 * seconds)) / 16000
    paths = []
    for i in range(n):
        x = np.sin(2 * np.pi * (120 + i % 50) * t) * (1 + np.sin(2 * np.pi * 3 * t)) + 0.3 * rng.normal(size=len(t))
        p = folder / f"u{i:05d}.wav"
        sf.write(p, (0.2 * x / np.abs(x).max()).astype(np.float32), 16000, subtype="PCM_16")
        paths.append(p)
    return paths


def feature_speed(n_files: int, seconds: float = 3.0) -> dict[str, float]:
    """Seconds of audio per second: cold extraction, per-file cache entries, and the pack a re-run opens.

    ``cold`` extracts every file into the per-file cache. ``entries`` loads them all again through a fresh
    :class:`~paraling.features.FeatureStore` (digest memo + memory-mapped ``.npy`` per file). ``packed`` is what
    :func:`paraling.pipeline.dataset.prepare_data` does on a re-run: ``stat`` every audio file, open the corpus's pack
    and read every frame of it. The pack's one-off build is timed separately and not counted in ``cold``.
    """
    from paraling.data.windows import fill_frames, plan_layout
    from paraling.features import FeatureStore, LogMelSpec
    from paraling.features.packed import PackStore, file_signatures

    with tempfile.TemporaryDirectory() as tmp:
        paths = write_wavs(Path(tmp) / "wav", n_files, seconds)
        audio = n_files * seconds
        cold_store = FeatureStore(Path(tmp) / "cache", LogMelSpec())
        t0 = time.perf_counter()
        for p in paths:
            cold_store.get(p)
        cold = time.perf_counter() - t0
        warm_store = FeatureStore(Path(tmp) / "cache", LogMelSpec())  # a new process would start like this
        t0 = time.perf_counter()
        lengths = []
        for p in paths:
            f, _ = warm_store.get(p)
            np.asarray(f).sum()  # touch the data
            lengths.append(len(f))
        entries = time.perf_counter() - t0
        assert warm_store.hits == n_files
        packs = PackStore(Path(tmp) / "packed")
        key = packs.key({"spec": warm_store.spec.key()}, [(p.name, str(p), "") for p in paths])
        rows, kept = plan_layout(np.array(lengths, dtype=np.int64), 11)
        t0 = time.perf_counter()
        packs.build(
            key,
            file_signatures(paths),
            rows,
            kept,
            warm_store.spec.n_features,
            lambda d, e: fill_frames(d, e, rows, lambda i: warm_store.get(paths[i]), "none"),
        )
        build = time.perf_counter() - t0
        t0 = time.perf_counter()
        pack = PackStore(Path(tmp) / "packed").load(key, file_signatures(paths))
        assert pack is not None
        float(np.asarray(pack.data).sum())  # touch every frame
        packed = time.perf_counter() - t0
    return {
        "cold_audio_s_per_s": audio / cold,
        "entries_audio_s_per_s": audio / entries,
        "cached_audio_s_per_s": audio / packed,
        "pack_build_s": build,
        "entry_speedup": cold / entries,
        "speedup": cold / packed,
    }


def sweep_overhead(epochs: int = 10, folds: int = 5, trial_seconds: float = 60.0) -> dict[str, float]:
    """Bookkeeping of one sweep trial: Hydra composition, Optuna journal I/O and MLflow logging of a full run.

    Everything a trial does besides features and training is timed for a trial of ``folds`` x ``epochs`` epochs
    (params, per-epoch metrics reported to both Optuna and MLflow, out-of-fold scores, plots, model files) and
    divided by ``trial_seconds``.
    """
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    from paraling.config import compose as compose_config
    from paraling.tracking.tracker import RunTracker, flatten

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        uri = f"sqlite:///{tmp}/mlflow.db"
        RunTracker("warm", uri).end()  # database schema creation is a one-off, not per trial
        storage = JournalStorage(JournalFileBackend(os.path.join(tmp, "journal.log")))
        study = optuna.create_study(study_name="bench", storage=storage, direction="maximize")
        t0 = time.perf_counter()
        cfg = compose_config(["model.dropout_fc=0.3", "trainer.epochs=10"])
        trial = study.ask()
        trial.suggest_float("model.dropout_fc", 0.1, 0.6)
        from omegaconf import OmegaConf

        tracker = RunTracker("bench", uri, "trial")
        tracker.log_params(flatten(OmegaConf.to_container(cfg, resolve=True)))  # type: ignore[arg-type]
        tracker.log_text(OmegaConf.to_yaml(cfg), "config.yaml")
        step = 0
        for f in range(folds):
            for e in range(epochs):
                m = {"train_loss": 1.0, "val_loss": 1.0, "val_uar": 0.5, "lr": 0.01, "momentum": 0.9}
                tracker.log_metrics({f"{k}/fold{f}": v for k, v in m.items()}, step=e)  # as run_cv names them
                trial.report(0.5, step)
                trial.should_prune()
                step += 1
        art = Path(tmp) / "art"
        art.mkdir()
        np.savez_compressed(art / "scores.npz", proba=np.random.rand(630, 7).astype(np.float32))
        (art / "fold0.safetensors").write_bytes(os.urandom(2_500_000))
        tracker.log_artifact(art, "oof")
        tracker.log_metrics({"uar": 0.5})
        tracker.end()
        study.tell(trial, 0.5)
        overhead = time.perf_counter() - t0
    return {"overhead_s": overhead, "fraction": overhead / trial_seconds}


_PROBE = """
import json, resource, sys, threading, time
from paraling.config import compose
from paraling.pipeline.experiment import run_experiment

peak_anon = [0]
def sample():  # anonymous memory cannot be dropped by the kernel: it is what must fit in RAM
    while True:
        for line in open("/proc/self/status"):
            if line.startswith("RssAnon:"):
                peak_anon[0] = max(peak_anon[0], int(line.split()[1]))
        time.sleep(0.02)
threading.Thread(target=sample, daemon=True).start()
cfg = compose(["corpus=csv", "corpus.path=" + sys.argv[1]])
cfg.tracking.enabled, cfg.progress, cfg.cache_dir = False, "never", sys.argv[2]
cfg.cv.folds, cfg.trainer.epochs, cfg.trainer.max_windows_per_epoch = 2, 1, 4096
run_experiment(cfg)
maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"maxrss_mb": maxrss / 1024, "anon_mb": peak_anon[0] / 1024}))
"""


def _window_copy_mb(seconds: float) -> float:
    """MB that one float32 copy of all windows of one utterance of ``seconds`` would take (default config)."""
    from paraling.config import compose
    from paraling.data.windows import count_windows
    from paraling.features import LogMelSpec

    cfg = compose([])
    spec = LogMelSpec.from_config(cfg.features)
    frames = 1 + (int(seconds * spec.sample_rate) - spec.win_length) // spec.hop_length
    width = int(cfg.windows.width)
    windows = max(1, count_windows(frames, width, int(cfg.windows.shift)))  # short clips: one padded window
    return windows * spec.n_mels * width * 4 / 1e6


def peak_memory(sizes: tuple[int, int] = (200, 400), seconds: float = 3.0) -> dict[str, float]:
    """Peak memory of a whole ``run_experiment`` at two corpus sizes; the slopes are the cost per 1,000 utterances.

    ``anon`` is the peak of anonymous memory (heap, tensors: what has to fit in RAM); ``rss`` also counts pages of
    memory-mapped files (the feature pack, cache entries), which the kernel drops again when memory is short.
    """
    rss, anon = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            folder = Path(tmp) / f"c{n}"
            paths = write_wavs(folder, n, seconds, seed=n)
            lines = ["file,label,speaker"] + [f"{p.name},c{i % 3},s{i % 10}" for i, p in enumerate(paths)]
            (folder / "c.csv").write_text("\n".join(lines) + "\n")
            out = subprocess.run(
                [sys.executable, "-c", _PROBE, str(folder / "c.csv"), str(Path(tmp) / "cache")],
                capture_output=True,
                text=True,
                check=True,
                timeout=900,
            )
            probe = json.loads(out.stdout.strip().splitlines()[-1])
            rss[n], anon[n] = probe["maxrss_mb"], probe["anon_mb"]
    a, b = sizes
    slope = (rss[b] - rss[a]) / (b - a) * 1000
    anon_slope = (anon[b] - anon[a]) / (b - a) * 1000
    return {
        "window_copy_mb_per_1000_utts": _window_copy_mb(seconds) * 1000,
        "rss_small_mb": rss[a],
        "rss_large_mb": rss[b],
        "mb_per_1000_utts": slope,
        "anon_small_mb": anon[a],
        "anon_large_mb": anon[b],
        "anon_mb_per_1000_utts": anon_slope,
        "utt_seconds": seconds,
    }
