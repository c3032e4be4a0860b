"""SIGKILL `paraling train` mid-run for real, re-run it, and check nothing is lost or left RUNNING."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

ARGS = [
    "trainer.epochs=6",
    "cv.folds=2",
    "model.channels=[8,8,8]",
    "model.fc_sizes=[32,32]",
    "progress=never",
    "trainer.batch_size=32",
]


def _cmd(csv: Path, cache: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "paraling.cli",
        "train",
        "corpus=csv",
        f"corpus.path={csv}",
        f"cache_dir={cache}",
        *ARGS,
    ]


def _wait_for(pred, timeout: float = 240.0) -> None:
    t0 = time.time()
    while not pred():
        if time.time() - t0 > timeout:
            raise TimeoutError("condition not reached")
        time.sleep(0.2)


@pytest.mark.slow
def test_sigkill_during_an_epoch_then_resume(tone_corpus: Path, tmp_path: Path, mlflow_uri: str) -> None:
    cache = tmp_path / "cache"
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_uri}
    proc = subprocess.Popen(
        _cmd(tone_corpus, cache), cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    ckpts = cache / "checkpoints"
    _wait_for(lambda: any(ckpts.rglob("fold1.pt")) if ckpts.exists() else False)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    client = MlflowClient(mlflow_uri)
    exp = client.get_experiment_by_name("paraling")
    (killed,) = client.search_runs([exp.experiment_id])
    assert killed.info.status == "RUNNING"  # the killed process could not end it
    assert not list(cache.rglob("*.npy.tmp"))
    done = subprocess.run(_cmd(tone_corpus, cache), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1, "the re-run resumes the same MLflow run"
    run = runs[0]
    assert run.info.status == "FINISHED" and run.data.tags.get("paraling.resumed") == "true"
    steps0 = [m.step for m in client.get_metric_history(run.info.run_id, "fold0_train_loss")]
    steps1 = [m.step for m in client.get_metric_history(run.info.run_id, "fold1_train_loss")]
    assert sorted(steps0) == list(range(6)), "fold 0 finished before the kill and is not retrained"
    assert sorted(set(steps1)) == list(range(6))
    assert len(steps1) <= 6 + 1  # resumed from the last checkpoint: at most the interrupted epoch runs twice
    assert not any(ckpts.rglob("*.pt")), "checkpoints are removed once the run is complete"
    assert "uar" in run.data.metrics


@pytest.mark.slow
def test_dead_owner_runs_are_reaped(tone_corpus: Path, tmp_path: Path, mlflow_uri: str) -> None:
    """A killed run whose config is never re-run is still ended FAILED by the next paraling process."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_uri}
    cache = tmp_path / "cache"
    proc = subprocess.Popen(
        _cmd(tone_corpus, cache), cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    _wait_for(lambda: any((cache / "checkpoints").rglob("fold0.pt")) if (cache / "checkpoints").exists() else False)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    other = subprocess.run(
        [*_cmd(tone_corpus, cache), "trainer.epochs=1"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert other.returncode == 0, other.stderr[-3000:]
    client = MlflowClient(mlflow_uri)
    runs = client.search_runs([client.get_experiment_by_name("paraling").experiment_id])
    states = sorted((r.info.status, r.data.tags.get("paraling.state")) for r in runs)
    assert states == [("FAILED", "FAIL"), ("FINISHED", "COMPLETE")]
    failed = next(r for r in runs if r.info.status == "FAILED")
    assert "died" in failed.data.tags["paraling.error"]


@pytest.mark.slow
def test_sigkill_during_feature_caching_leaves_a_valid_cache(make_corpus, tmp_path: Path, mlflow_uri: str) -> None:
    """Every cache entry present after a kill loads; the re-run reuses them and computes only the rest."""
    import numpy as np

    csv = make_corpus(tmp_path / "big", n_speakers=6, per_class=12, seconds=2.0)  # 216 files
    cache = tmp_path / "cache"
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_uri}
    proc = subprocess.Popen(
        _cmd(csv, cache), cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    feats = cache / "features"
    _wait_for(lambda: len(list(feats.rglob("*.npy"))) >= 20 if feats.exists() else False)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    entries = list(feats.rglob("*.npy"))
    assert 20 <= len(entries) < 216, "killed in the middle of feature caching"
    for e in entries:
        arr = np.load(e, allow_pickle=False)
        assert arr.ndim == 2 and arr.shape[1] == 41 and np.isfinite(arr).all()
    done = subprocess.run(
        [*_cmd(csv, cache), "trainer.epochs=1"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout + done.stderr
    hits = int(out.split("features: ")[1].split(" cached")[0]) if "features: " in out else -1
    assert hits >= len(entries) - 1
