"""`paraling train` end to end through the real CLI: MLflow runs, artifacts, multirun, clean errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from paraling.scoring.oof import load_oof

TINY = [
    "trainer.epochs=2",
    "cv.folds=2",
    "model.channels=[8,8,8]",
    "model.fc_sizes=[32,32]",
    "trainer.batch_size=64",
    "progress=never",
]


def _run(args: list[str], cwd: Path, uri: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "PARALING_TEST": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "paraling.cli.main", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if ok:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def test_train_logs_a_complete_run(tone_corpus: Path, tmp_path: Path, mlflow_uri: str) -> None:
    proc = _run(
        ["train", "corpus=csv", f"corpus.path={tone_corpus}", *TINY, f"cache_dir={tmp_path / 'c'}"],
        tmp_path,
        mlflow_uri,
    )
    assert "out-of-fold UAR" in proc.stdout and "mlflow ui --backend-store-uri" in proc.stdout
    assert "?workflowType=machine_learning" in proc.stdout  # the printed link opens MLflow's training view
    client = MlflowClient(mlflow_uri)
    exp = client.get_experiment_by_name("paraling")
    (run,) = client.search_runs([exp.experiment_id])
    assert run.info.status == "FINISHED" and run.data.tags["paraling.state"] == "COMPLETE"
    assert run.data.params["trainer.epochs"] == "2" and run.data.params["cv.folds"] == "2"
    for key in ("uar", "accuracy", "uar_fold0", "uar_fold1", "uar_fold_mean", "uar_fold_std", "uar_weighted"):
        assert key in run.data.metrics
    history = client.get_metric_history(run.info.run_id, "val_uar/mean")  # the folds' mean per epoch
    assert sorted(m.step for m in history) == [0, 1]
    assert len(client.get_metric_history(run.info.run_id, "train_loss/fold1")) == 2
    for fold in (0, 1):  # the weighted vote's diagnostics, one section per quantity
        assert 0.0 <= run.data.metrics[f"vote_window_acc_test/fold{fold}"] <= 1.0
        assert 0.0 <= run.data.metrics[f"vote_uar_weighted_oracle/fold{fold}"] <= 1.0
        assert f"vote_uar_weighted_soft_noenergy/fold{fold}" in run.data.metrics
    # the CNN is also an MLflow logged model of the run (the runs table's Models column)
    (model,) = client.search_logged_models([exp.experiment_id], filter_string=f"source_run_id = '{run.info.run_id}'")
    assert model.status.name == "READY" and model.model_type == "paraling-cnn" and model.name == "default"
    assert [o.model_id for o in client.get_run(run.info.run_id).outputs.model_outputs] == [model.model_id]
    assert "spec.json" in {a.path for a in client.list_logged_model_artifacts(model.model_id)}
    arts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"oof", "plots", "model", "data", "config.yaml"} <= arts
    plots = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert {"plots/confusion_matrix.png", "plots/loss_curves.png"} <= plots
    local = client.download_artifacts(run.info.run_id, "oof/scores.npz", str(tmp_path))
    oof = load_oof(local)
    assert len(oof.utt_ids) == 36 and set(oof.fold.tolist()) == {0, 1}
    assert np.allclose(oof.proba.sum(1), 1, atol=1e-4)
    assert "window_proba" in oof.windows
    assert run.data.tags["paraling.reproduce"].startswith("paraling train corpus=csv")
    assert "paraling.torch" in run.data.tags and run.data.tags["paraling.seed"] == "0"
    # a second run reuses the feature cache
    proc2 = _run(
        [
            "train",
            "corpus=csv",
            f"corpus.path={tone_corpus}",
            *TINY,
            "trainer.epochs=1",
            f"cache_dir={tmp_path / 'c'}",
        ],
        tmp_path,
        mlflow_uri,
    )
    assert "features: 36 utterances from pack" in proc2.stdout + proc2.stderr


def test_multirun_makes_one_run_per_job(tone_corpus: Path, tmp_path: Path, mlflow_uri: str) -> None:
    _run(
        [
            "train",
            "-m",
            "corpus=csv",
            f"corpus.path={tone_corpus}",
            *TINY,
            "trainer.epochs=1",
            "model.dropout_fc=0.3,0.5",
        ],
        tmp_path,
        mlflow_uri,
    )
    client = MlflowClient(mlflow_uri)
    runs = client.search_runs([client.get_experiment_by_name("paraling").experiment_id])
    assert sorted(r.data.params["model.dropout_fc"] for r in runs) == ["0.3", "0.5"]
    assert all(r.info.status == "FINISHED" for r in runs)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["corpus=csv"], "corpus.path"),
        (["corpus=csv", "corpus.path=/does/not/exist.csv"], "CSV not found"),
        (["model.dropout_fc=2"], "model.dropout_fc"),
    ],
)
def test_bad_input_is_one_clear_line(tmp_path: Path, mlflow_uri: str, args: list[str], needle: str) -> None:
    proc = _run(["train", *args, "progress=never"], tmp_path, mlflow_uri, ok=False)
    assert proc.returncode == 2
    assert "paraling: error:" in proc.stderr and needle in proc.stderr
    assert "Traceback" not in proc.stderr


def test_unknown_key_is_named(tmp_path: Path, mlflow_uri: str) -> None:
    proc = _run(["train", "model.depth=3"], tmp_path, mlflow_uri, ok=False)
    assert proc.returncode != 0 and "depth" in proc.stderr and "Traceback" not in proc.stderr


def test_fewer_speakers_than_folds(make_corpus, tmp_path: Path, mlflow_uri: str) -> None:
    csv = make_corpus(tmp_path / "c", n_speakers=3, per_class=1)
    proc = _run(
        ["train", "corpus=csv", f"corpus.path={csv}", "cv.folds=5", "progress=never"],
        tmp_path,
        mlflow_uri,
        ok=False,
    )
    assert "3 speaker(s) but cv.folds=5" in proc.stderr and "Traceback" not in proc.stderr
