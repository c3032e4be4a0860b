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
        "paraling.cli.main",
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
    steps0 = [m.step for m in client.get_metric_history(run.info.run_id, "train_loss/fold0")]
    steps1 = [m.step for m in client.get_metric_history(run.info.run_id, "train_loss/fold1")]
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


def _load_artifact(path: Path) -> None:
    """Parse one artifact file completely; raises if it is truncated or corrupt."""
    import json

    import numpy as np
    import yaml
    from PIL import Image
    from safetensors.numpy import load_file

    suffix = path.suffix
    if suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            for k in z.files:
                z[k]
    elif suffix == ".json":
        json.loads(path.read_text())
    elif suffix == ".jsonl":
        for line in path.read_text().splitlines():
            json.loads(line)
    elif suffix == ".safetensors":
        load_file(path)
    elif suffix == ".png":
        with Image.open(path) as im:
            im.load()
    elif suffix == ".yaml":
        yaml.safe_load(path.read_text())
    else:
        raise AssertionError(f"unexpected artifact {path}")


def _artifacts(client: MlflowClient, run_id: str, dst: Path) -> set[str]:
    """Download the run's listed artifacts into ``dst``, check each one parses, return their paths."""
    dst.mkdir()
    client.download_artifacts(run_id, "", str(dst))
    files = {p.relative_to(dst).as_posix() for p in dst.rglob("*") if p.is_file()}
    for f in files:
        _load_artifact(dst / f)
    return files


COMPLETE_ARTIFACTS = {
    "config.yaml",
    "data/manifest.jsonl",
    "model/fold0.json",
    "model/fold0.safetensors",
    "model/fold1.json",
    "model/fold1.safetensors",
    "model/spec.json",
    "oof/all_aggregations.npz",
    "oof/embeddings.npz",
    "oof/scores.npz",
    "plots/confusion_matrix.png",
    "plots/loss_curves.png",
}


@pytest.mark.slow
@pytest.mark.parametrize("phase", ["staging", "upload"])
def test_sigkill_while_writing_artifacts_then_resume(
    tone_corpus: Path, tmp_path: Path, mlflow_uri: str, phase: str
) -> None:
    """Killed after training, while the artifacts are written locally or uploaded to the run.

    ``staging``: as soon as the out-of-fold scores appear in the run's local staging folder (under ``$TMPDIR``);
    ``upload``: as soon as the first out-of-fold file (even a half-copied one) appears in the run's artifact store.
    """
    cache, staging = tmp_path / "cache", tmp_path / "tmp"
    staging.mkdir()
    store = tmp_path / "mlruns" / "artifacts"
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_uri, "TMPDIR": str(staging)}
    cmd = [*_cmd(tone_corpus, cache), "trainer.epochs=2"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if phase == "staging":
        started = lambda: any(staging.glob("*/oof/scores.npz"))  # noqa: E731
    else:
        started = lambda: any(store.glob("*/artifacts/oof/*")) if store.exists() else False  # noqa: E731
    t0 = time.time()
    while not started():
        assert proc.poll() is None, "the run ended before its artifacts were written"
        assert time.time() - t0 < 240, "artifacts never started"
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    client = MlflowClient(mlflow_uri)
    exp = client.get_experiment_by_name("paraling")
    (killed,) = client.search_runs([exp.experiment_id])
    assert killed.info.status == "RUNNING"  # the killed process could not end it
    partial = _artifacts(client, killed.info.run_id, tmp_path / "after_kill")  # every listed file parses
    assert "config.yaml" in partial and partial < COMPLETE_ARTIFACTS, "killed while writing artifacts"

    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    runs = client.search_runs([exp.experiment_id])
    assert [r.info.run_id for r in runs] == [killed.info.run_id], "the re-run resumes the same MLflow run"
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert run.data.tags.get("paraling.resumed") == "true" and run.data.tags.get("paraling.state") == "COMPLETE"
    assert _artifacts(client, run.info.run_id, tmp_path / "after_rerun") == COMPLETE_ARTIFACTS
    for fold in (0, 1):  # both folds resumed from their final checkpoints: no epoch was trained twice
        steps = [m.step for m in client.get_metric_history(run.info.run_id, f"train_loss/fold{fold}")]
        assert sorted(steps) == [0, 1]
    assert not any((cache / "checkpoints").rglob("*.pt")), "checkpoints are removed once the run is complete"
    assert "uar" in run.data.metrics
