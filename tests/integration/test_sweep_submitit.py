"""`paraling sweep --executor local --jobs N`: the workers as a submitit job array (submitit's local executor stands
in for SLURM), a job stopped at its time limit requeued and the study finished; cluster runs refuse file storages."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import optuna
import pytest
import yaml
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from paraling.cli.sweep import main as sweep_main
from paraling.errors import SearchError
from paraling.search.storage import make_storage


def _study(folder: Path, name: str, **fields: object) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"study_name": name, "sampler": {"name": "grid"}, **fields}, sort_keys=False))
    return path


def _runs(uri: str) -> list:
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("paraling")
    return client.search_runs([exp.experiment_id])


@pytest.mark.slow
def test_local_executor_runs_the_study_as_a_job_array(
    tone_corpus: Path, tmp_path: Path, mlflow_uri: str, tiny_overrides: Callable[..., list[str]]
) -> None:
    path = _study(
        tmp_path,
        "jobs",
        space={"windows.width": [11, 13, 15, 17]},
        pruner={"name": "threshold", "lower": 1.01, "n_warmup_steps": 2},  # nothing reaches UAR 1.01: 1-epoch ones pass
        n_trials=4,
    )
    overrides = tiny_overrides(tone_corpus, tmp_path / "c", epochs=2, log_model=False)
    argv = [str(path), "--executor", "local", "--jobs", "2", "--slurm-time", "20", *overrides]
    with pytest.raises(SearchError, match=r"no trial completed \(0 failed, 4 pruned\)"):  # a study without a result
        sweep_main(argv)
    study = optuna.load_study(study_name="jobs", storage=make_storage(str(tmp_path / "jobs" / "journal.log")))
    states = [t.state for t in study.trials]
    assert len(states) == 4 and set(states) == {TrialState.PRUNED}  # pruned at step 2 (fold 1, epoch 0)
    pids = {t.system_attrs.get("paraling:worker", {}).get("pid") for t in study.trials}
    assert len(pids - {None}) >= 1
    runs = _runs(mlflow_uri)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and len(children) == 4
    assert all(r.info.status != "RUNNING" for r in runs)
    assert (tmp_path / "jobs" / "submitit").is_dir()  # job files and logs beside the journal
    _assert_private(tmp_path / "jobs" / "submitit")


def _assert_private(folder: Path) -> None:
    """The pickled job arguments hold the storage and tracking URLs (passwords included): this user's only."""
    import stat

    pickles = list(folder.rglob("*.pkl"))
    assert pickles
    for p in [folder, *folder.rglob("*")]:
        mode = stat.S_IMODE(p.lstat().st_mode)
        assert mode & 0o077 == 0, f"{p} is readable by others: {oct(mode)}"


def test_a_cluster_run_refuses_a_journal_or_sqlite_storage(tmp_path: Path, mlflow_uri: str) -> None:
    path = _study(tmp_path, "refuse", space={"windows.width": [11]}, n_trials=1)
    for storage in ([], ["--storage", f"sqlite:///{tmp_path}/optuna.db"]):
        with pytest.raises(SearchError, match=r"postgresql://"):
            sweep_main([str(path), "--executor", "slurm", "--jobs", "2", *storage])
    assert not (tmp_path / "refuse").exists()  # refused before anything was created


@pytest.mark.slow
def test_a_preempted_job_is_requeued_and_its_trial_retried(
    tone_corpus: Path, tmp_path: Path, mlflow_uri: str, tiny_overrides: Callable[..., list[str]]
) -> None:
    """The scheduler's preemption signal (SIGUSR2, as SLURM sends it with submitit) mid-trial: submitit requeues the
    job, the requeued worker fails the dead worker's trial, queues it once, and the study still completes."""
    import os
    import signal
    import subprocess
    import sys
    import time

    path = _study(tmp_path, "preempt", space={"windows.width": [11, 13]}, pruner={"name": "none"}, n_trials=2)
    overrides = tiny_overrides(tone_corpus, tmp_path / "c", epochs=40, log_model=False)
    cmd = [sys.executable, "-m", "paraling.cli.main", "sweep", str(path), "--executor", "local", "--jobs", "1"]
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_uri}
    proc = subprocess.Popen([*cmd, *overrides], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    journal = tmp_path / "preempt" / "journal.log"
    victim, deadline = None, time.time() + 180
    while victim is None and time.time() < deadline:
        time.sleep(0.5)
        if journal.exists():
            trials = optuna.load_study(study_name="preempt", storage=make_storage(str(journal))).trials
            running = [t for t in trials if t.state == TrialState.RUNNING and "paraling:worker" in t.system_attrs]
            if running and running[0].intermediate_values:  # well inside its first trial
                victim = running[0]
    assert victim is not None, "no trial started"
    os.kill(int(victim.system_attrs["paraling:worker"]["pid"]), signal.SIGUSR2)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out.decode()[-3000:]
    study = optuna.load_study(study_name="preempt", storage=make_storage(str(journal)))
    by_number = {t.number: t for t in study.trials}
    assert by_number[victim.number].state == TrialState.FAIL
    (retry,) = [t for t in study.trials if t.system_attrs.get("failed_trial") == victim.number]
    assert retry.state == TrialState.COMPLETE and retry.params == victim.params
    assert sum(t.state == TrialState.COMPLETE for t in study.trials) == 2
    assert all(r.info.status != "RUNNING" for r in _runs(mlflow_uri))
    logs = "".join(p.read_text(errors="replace") for p in (tmp_path / "preempt" / "submitit").rglob("*.err"))
    assert "preempted" in logs


@pytest.mark.slow
def test_hydra_submitit_launcher_runs_the_sweepers_study(
    tone_corpus: Path, tmp_path: Path, mlflow_uri: str, tiny_overrides: Callable[..., list[str]]
) -> None:
    """`paraling train -m hydra/sweeper=paraling_optuna hydra/launcher=submitit_local`: 4 trials in batches of 2
    submitit jobs, pruning inside the jobs, one MLflow parent with 4 children, nothing left RUNNING."""
    import os
    import subprocess
    import sys

    path = _study(
        tmp_path,
        "hsub",
        space={"trainer.epochs": [1, 2], "windows.width": [11, 13]},
        pruner={"name": "threshold", "lower": 1.01, "n_warmup_steps": 2},  # the 2-epoch trials are pruned at step 2
        n_trials=4,
    )
    cmd = [
        sys.executable,
        "-m",
        "paraling.cli.main",
        "train",
        "-m",
        "hydra/sweeper=paraling_optuna",
        f"+sweep={path}",
        "hydra/launcher=submitit_local",
        "hydra.launcher.timeout_min=20",
        "hydra.sweeper.n_jobs=2",
        f"hydra.sweep.dir={tmp_path / 'multirun'}",
        *[
            o
            for o in tiny_overrides(tone_corpus, tmp_path / "c", log_model=False)
            if not o.startswith("trainer.epochs")
        ],
    ]
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_uri}
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    study = optuna.load_study(study_name="hsub", storage=make_storage(str(tmp_path / "hsub" / "journal.log")))
    by_epochs = sorted((t.params["trainer.epochs"], t.state.name) for t in study.trials)
    assert by_epochs == [(1, "COMPLETE"), (1, "COMPLETE"), (2, "PRUNED"), (2, "PRUNED")]
    runs = _runs(mlflow_uri)
    parents = [r for r in runs if r.data.tags.get("paraling.role") == "sweep"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert len(parents) == 1 and len(children) == 4 and len(runs) == 5
    assert all(r.info.status != "RUNNING" for r in runs)
    assert sorted(c.data.tags["paraling.state"] for c in children) == ["COMPLETE", "COMPLETE", "PRUNED", "PRUNED"]
    assert list((tmp_path / "multirun").rglob("*_submitted.pkl"))  # the jobs really went through submitit
    _assert_private(tmp_path / "multirun" / ".submitit")


@pytest.mark.slow
def test_a_killed_job_does_not_fail_a_study_the_other_jobs_complete(
    tone_corpus: Path, tmp_path: Path, mlflow_uri: str, tiny_overrides: Callable[..., list[str]]
) -> None:
    """kill -9 of one job of two: the other job fails and retries its trial, the study completes, and the sweep exits
    0 (it used to raise 'sweep jobs failed' and exit 2 although nothing was missing)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    path = _study(tmp_path, "killjob", space={"windows.width": [11, 13, 15]}, pruner={"name": "none"}, n_trials=3)
    overrides = tiny_overrides(tone_corpus, tmp_path / "c", epochs=20, log_model=False)
    cmd = [sys.executable, "-m", "paraling.cli.main", "sweep", str(path), "--executor", "local", "--jobs", "2"]
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_uri}
    proc = subprocess.Popen([*cmd, *overrides], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    journal = tmp_path / "killjob" / "journal.log"
    victim, deadline = None, time.time() + 180
    while victim is None and time.time() < deadline:
        time.sleep(0.5)
        if journal.exists():
            trials = optuna.load_study(study_name="killjob", storage=make_storage(str(journal))).trials
            running = [t for t in trials if t.state == TrialState.RUNNING and "paraling:worker" in t.system_attrs]
            if running and running[0].intermediate_values:
                victim = running[0]
    assert victim is not None, "no trial started"
    os.kill(int(victim.system_attrs["paraling:worker"]["pid"]), signal.SIGKILL)
    out, _ = proc.communicate(timeout=600)
    text = out.decode()
    assert proc.returncode == 0, text[-3000:]
    assert "sweep job failed" in text  # logged, with its log file
    study = optuna.load_study(study_name="killjob", storage=make_storage(str(journal)))
    assert sum(t.state == TrialState.COMPLETE for t in study.trials) == 3
