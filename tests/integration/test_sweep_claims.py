"""README claims of the sweep that nothing tested before: SIGTERM, the Hydra sweep syntax, SQLite heartbeats, grid
with two workers, --timeout/--check/--dashboard, CUDA out of memory as FAIL, and two run-time warnings."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch
import yaml
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from paraling.search import SweepOptions, load_study_spec, run_sweep
from paraling.search.recovery import WORKER_ATTR
from paraling.search.storage import make_storage

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _study(folder: Path, name: str, **fields: Any) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"study_name": name, "pruner": "none", **fields}, sort_keys=False))
    return path


def _journal(path: Path) -> optuna.Study:
    return optuna.load_study(study_name=path.stem, storage=make_storage(str(path.parent / path.stem / "journal.log")))


@pytest.mark.slow
def test_sigterm_fails_and_requeues_the_trial_kills_the_runs_and_exits_130(
    tone_corpus: Path,
    tmp_path: Path,
    mlflow_uri: str,
    tiny_overrides: Callable[..., list[str]],
) -> None:
    path = _study(tmp_path, "term", space={"windows.width": [11, 13]}, sampler={"name": "grid"})
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "paraling.cli.main",
            "sweep",
            str(path),
            *tiny_overrides(tone_corpus, tmp_path / "c", epochs=400, log_model=False),
        ],
        cwd=tmp_path,
        env={**os.environ, "MLFLOW_TRACKING_URI": mlflow_uri},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.time() + 240
    while True:
        assert proc.poll() is None and time.time() < deadline, proc.communicate()[0][-3000:]
        try:
            running = _journal(path).get_trials(states=(TrialState.RUNNING,))
        except Exception:  # not created yet
            running = []
        if running and list((tmp_path / "c").glob("packed/*/meta.json")):
            break
        time.sleep(0.3)
    time.sleep(2)  # into training (a trial of 400 epochs takes far longer)
    (victim,) = [t.number for t in _journal(path).get_trials(states=(TrialState.RUNNING,))]
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=180)
    assert proc.returncode == 130, out[-3000:]
    assert "Traceback" not in out and "interrupted: re-run the same command to resume" in out
    trials = _journal(path).trials
    killed = trials[victim]
    assert killed.state == TrialState.FAIL and "interrupted" in killed.user_attrs["fail_reason"]
    (retry,) = [t for t in trials if t.system_attrs.get("failed_trial") == victim]
    assert retry.state == TrialState.WAITING and retry.params == killed.params
    client = MlflowClient(mlflow_uri)
    runs = client.search_runs([client.get_experiment_by_name("paraling").experiment_id])
    parent = [r for r in runs if r.data.tags.get("paraling.role") == "sweep"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent[0].info.run_id]
    (child,) = [r for r in children if r.data.tags.get("paraling.sweep.trial") == str(victim)]
    assert parent[0].info.status == "KILLED" and child.info.status == "KILLED"


def test_hydra_sweep_syntax_maps_to_study_parameters() -> None:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from paraling.search.hydra_sweeper import _sweep_params

    parsed = OverridesParser.create().parse_overrides(
        [
            "aggregation=choice(majority,weighted)",
            "windows.width=range(11,19,2)",
            "trainer.lr_start=interval(0.001,0.1)",
            "model.dropout_fc=tag(log, interval(0.01,0.5))",
            "model.n_blocks=interval(2,4)",
            "trainer.batch_size=128,256",
        ]
    )
    got = _sweep_params(parsed)
    assert got["aggregation"] == {"type": "categorical", "choices": ["majority", "weighted"]}
    assert got["windows.width"] == {"type": "int", "low": 11, "high": 17, "step": 2}
    assert got["trainer.lr_start"] == {"type": "float", "low": 0.001, "high": 0.1, "log": False}
    assert got["model.dropout_fc"]["log"] is True and got["model.dropout_fc"]["type"] == "float"
    assert got["model.n_blocks"] == {"type": "float", "low": 2.0, "high": 4.0, "log": False}  # Hydra: floats
    assert got["trainer.batch_size"]["choices"] == [128, 256]


def test_sqlite_storage_uses_optuna_heartbeats_and_retries_a_stale_trial(
    tone_corpus: Path,
    tmp_path: Path,
    mlflow_uri: str,
    tiny_overrides: Callable[..., list[str]],
) -> None:
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    path = _study(
        tmp_path,
        "hb",
        space={"windows.width": [11, 13]},
        sampler={"name": "grid"},
        storage={"url": url, "heartbeat_interval": 1, "grace_period": 2},
    )
    storage = make_storage(url, 1, 2)
    assert isinstance(storage, optuna.storages.RDBStorage) and storage.heartbeat_interval == 1
    assert isinstance(storage.failed_trial_callback, optuna.storages.RetryHeartbeatStaleTrialCallback)
    spec = load_study_spec(path)
    from paraling.search.storage import create_or_load_study

    study = create_or_load_study(url, spec)
    stale = study.ask()
    spec.space.suggest(stale)
    storage.record_heartbeat(stale._trial_id)  # its worker beat once, then vanished (another host: no pid to check)
    time.sleep(3.5)
    summary = run_sweep(spec, SweepOptions(overrides=tiny_overrides(tone_corpus, tmp_path / "c", log_model=False)))
    assert summary.stopped == "complete" and summary.complete == 2, summary.format()
    trials = optuna.load_study(study_name="hb", storage=storage).trials
    assert trials[0].state == TrialState.FAIL
    assert [t.state for t in trials if t.system_attrs.get("failed_trial") == 0] == [TrialState.COMPLETE]


def test_grid_with_two_workers_runs_each_point_once(
    tone_corpus: Path, tmp_path: Path, mlflow_uri: str, tiny_overrides: Callable[..., list[str]]
) -> None:
    path = _study(tmp_path, "grid2", space={"windows.width": [11, 13, 15, 17]}, sampler={"name": "grid"})
    summary = run_sweep(
        load_study_spec(path),
        SweepOptions(workers=2, overrides=tiny_overrides(tone_corpus, tmp_path / "c", log_model=False)),
    )
    assert summary.complete == 4 and summary.stopped == "complete"
    trials = _journal(path).trials
    assert sorted(t.params["windows.width"] for t in trials) == [11, 13, 15, 17]
    assert all(t.system_attrs[WORKER_ATTR]["pid"] != os.getpid() for t in trials)  # ran in the two workers


def test_timeout_and_check(
    tone_corpus: Path, tmp_path: Path, mlflow_uri: str, tiny_overrides: Callable[..., list[str]]
) -> None:
    from paraling.cli.sweep import main as sweep_main
    from paraling.errors import ConfigError, SearchError

    path = _study(
        tmp_path,
        "t",
        space={"model.dropout_fc": {"type": "float", "low": 0.0, "high": 0.5}},
        sampler={"name": "random"},
        n_trials=50,
    )
    summary = run_sweep(
        load_study_spec(path),
        SweepOptions(timeout=1, overrides=tiny_overrides(tone_corpus, tmp_path / "c", log_model=False)),
    )
    assert summary.stopped == "timeout" and 1 <= summary.complete < 50
    n = len(_journal(path).trials)
    assert sweep_main([str(path), "--check", *tiny_overrides(tone_corpus, tmp_path / "c", log_model=False)]) == 0
    assert len(_journal(path).trials) == n  # --check ran nothing
    bad = _study(tmp_path, "bad", space={"model.no_such_key": [1, 2]}, sampler={"name": "grid"})
    with pytest.raises((ConfigError, SearchError), match="no_such_key"):
        sweep_main([str(bad), "--check", *tiny_overrides(tone_corpus, tmp_path / "c", log_model=False)])


@pytest.mark.slow
def test_dashboard_serves_the_study_on_loopback(
    tone_corpus: Path,
    tmp_path: Path,
    mlflow_uri: str,
    tiny_overrides: Callable[..., list[str]],
    free_port: Callable[[], int],
) -> None:
    path = _study(tmp_path, "dash", space={"windows.width": [11]}, sampler={"name": "grid"})
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "paraling.cli.main",
            "sweep",
            str(path),
            "--dashboard",
            "--dashboard-port",
            str(port),
            *tiny_overrides(tone_corpus, tmp_path / "c", log_model=False),
        ],
        cwd=tmp_path,
        env={**os.environ, "MLFLOW_TRACKING_URI": mlflow_uri},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline, body = time.time() + 240, ""
        while time.time() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=2) as r:
                    body = r.read().decode()
                if "dash" in body:
                    break
            except OSError:
                time.sleep(0.5)
        assert "dash" in body
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()


def test_cuda_out_of_memory_is_a_failed_trial_and_the_sweep_goes_on(
    tone_corpus: Path,
    tmp_path: Path,
    mlflow_uri: str,
    monkeypatch: pytest.MonkeyPatch,
    tiny_overrides: Callable[..., list[str]],
) -> None:
    from paraling.pipeline import experiment

    real = experiment.run_experiment

    def oom_at_width_13(cfg: Any, *a: Any, **k: Any) -> Any:
        if int(cfg.windows.width) == 13:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return real(cfg, *a, **k)

    monkeypatch.setattr(experiment, "run_experiment", oom_at_width_13)
    path = _study(tmp_path, "oom", space={"windows.width": [11, 13, 15]}, sampler={"name": "grid"})
    summary = run_sweep(
        load_study_spec(path), SweepOptions(overrides=tiny_overrides(tone_corpus, tmp_path / "c", log_model=False))
    )
    assert (summary.complete, summary.failed, summary.stopped) == (2, 1, "complete")
    (failed,) = [t for t in _journal(path).trials if t.state == TrialState.FAIL]
    assert failed.params["windows.width"] == 13 and "OutOfMemoryError" in failed.user_attrs["fail_reason"]


def test_warnings_for_a_class_only_in_a_test_fold_and_a_speaker_in_both_splits(
    tmp_path: Path, mlflow_uri: str, caplog: pytest.LogCaptureFixture, tiny_cfg, make_corpus
) -> None:
    import csv

    from paraling.pipeline.experiment import run_experiment

    csv_path = make_corpus(tmp_path / "c", n_speakers=4)
    with open(csv_path) as fh:
        rows = list(csv.DictReader(fh))
    one_speaker = [r for r in rows if r["label"] != "noise" or r["speaker"] == "spk0"]  # 'noise': one speaker only
    with open(csv_path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["file", "label", "speaker"])
        w.writeheader()
        w.writerows(one_speaker)
    with caplog.at_level(logging.WARNING):
        run_experiment(tiny_cfg(f"corpus.path={csv_path}", "cv.folds=2"))
    assert "['noise'] occur in the test speakers but not in training" in caplog.text
    split = csv_path.with_name("split.csv")
    with open(split, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["file", "label", "speaker", "split"])
        w.writeheader()
        w.writerows({**r, "split": "test" if i % 3 == 0 else "train"} for i, r in enumerate(rows))
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        run_experiment(tiny_cfg(f"corpus.path={split}", "cv=split", "corpus.split_column=split"))
    assert "appear in both train and test" in caplog.text and "not speaker-independent" in caplog.text
