"""Sweeps that ride out their services (issue 27, items 5-7): a PostgreSQL storage down mid-sweep is waited out; down
for good it is one line and nothing stays RUNNING; a tracking server that goes away queues the trial instead of
charging it to the study; a study in which nothing completed exits non-zero, and so does its re-run."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from paraling.errors import SearchError
from paraling.search import SweepOptions, load_study_spec, run_sweep
from paraling.search.storage import make_storage


class Sweep:
    """``paraling sweep`` in a subprocess whose output is collected line by line while it runs."""

    def __init__(self, argv: list[str], cwd: Path, env: dict[str, str]) -> None:
        cmd = [sys.executable, "-m", "paraling.cli.main", "sweep", *argv]
        self.proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    def wait_for(self, text: str, timeout: float = 300) -> None:
        deadline = time.time() + timeout
        while not any(text in line for line in self.lines):
            assert self.proc.poll() is None and time.time() < deadline, "".join(self.lines)[-3000:]
            time.sleep(0.1)

    def finish(self, timeout: float = 600) -> tuple[int, str]:
        rc = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=30)
        return rc, "".join(self.lines)


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env.update(MLFLOW_HTTP_REQUEST_MAX_RETRIES="1", MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR="0", **extra)
    return env


def _study(tmp_path: Path, name: str, storage: Any = None, n_trials: int = 4) -> Path:
    data: dict[str, Any] = {
        "study_name": name,
        "space": {"windows.width": [11, 13, 15, 17][:n_trials]},
        "sampler": {"name": "grid"},
        "pruner": "none",
        "n_trials": n_trials,
    }
    if storage is not None:
        data["storage"] = storage
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _runs(uri: str) -> list[Any]:
    client = MlflowClient(uri)
    return client.search_runs([e.experiment_id for e in client.search_experiments()])


@pytest.mark.service
@pytest.mark.slow
def test_a_storage_outage_mid_sweep_is_waited_out(
    postgres: Any, tone_corpus: Path, tmp_path: Path, mlflow_uri: str, tiny_overrides: Callable[..., list[str]]
) -> None:
    path = _study(tmp_path, "pgo", {"url": postgres.url, "outage_timeout": 120})
    argv = [str(path), "--workers", "2", *tiny_overrides(tone_corpus, tmp_path / "c", epochs=6, log_model=False)]
    sweep = Sweep(argv, tmp_path, _env(MLFLOW_TRACKING_URI=mlflow_uri))
    sweep.wait_for("started:")
    postgres.stop()
    time.sleep(20)  # the database is gone for 20 s while trials train and report
    postgres.start()
    rc, out = sweep.finish()
    assert rc == 0, out[-3000:]
    assert "is not answering" in out and "answers again" in out and "Traceback" not in out
    assert "trials: 4 of 4 finished: 4 complete" in out
    study = optuna.load_study(study_name="pgo", storage=make_storage(postgres.url))
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 4
    assert not [r for r in _runs(mlflow_uri) if r.info.status == "RUNNING"]


@pytest.mark.service
@pytest.mark.slow
def test_a_storage_that_stays_down_is_one_line_and_nothing_stays_running(
    postgres: Any, tone_corpus: Path, tmp_path: Path, mlflow_uri: str, tiny_overrides: Callable[..., list[str]]
) -> None:
    path = _study(tmp_path, "pgd", {"url": postgres.url, "outage_timeout": 5}, n_trials=2)
    argv = [str(path), *tiny_overrides(tone_corpus, tmp_path / "c", epochs=30, log_model=False)]
    sweep = Sweep(argv, tmp_path, _env(MLFLOW_TRACKING_URI=mlflow_uri))
    sweep.wait_for("started:")
    postgres.stop()
    rc, out = sweep.finish()
    assert rc == 2 and "Traceback" not in out, out[-3000:]
    (line,) = [x for x in out.splitlines() if x.startswith("paraling: error:")]
    assert "did not answer for" in line and "re-run the same command" in line
    runs = _runs(mlflow_uri)
    assert runs and not [r for r in runs if r.info.status == "RUNNING"]
    parent = next(r for r in runs if r.data.tags.get("paraling.role") == "sweep")
    assert parent.info.status == "FAILED" and "did not answer" in parent.data.tags["paraling.error"]
    # the database is back: the same command resumes, fails the trial its dead worker left RUNNING and finishes
    postgres.start()
    again = subprocess.run(
        [sys.executable, "-m", "paraling.cli.main", "sweep", *argv[:1], *argv[1:]],
        cwd=tmp_path,
        env=_env(MLFLOW_TRACKING_URI=mlflow_uri),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert again.returncode == 0, again.stderr[-3000:]
    assert "2 complete" in again.stdout


@pytest.mark.service
@pytest.mark.slow
def test_a_tracking_server_outage_queues_the_trial_instead_of_charging_it(
    tone_corpus: Path, tmp_path: Path, mlflow_servers: Any, tiny_overrides: Callable[..., list[str]]
) -> None:
    url, server = mlflow_servers.start(tmp_path)
    path = _study(tmp_path, "mlo", n_trials=2)
    overrides = tiny_overrides(tone_corpus, tmp_path / "c", epochs=30, log_model=False)
    sweep = Sweep([str(path), *overrides], tmp_path, _env(MLFLOW_TRACKING_URI=url))
    sweep.wait_for("started:")
    mlflow_servers.stop(server)
    rc, out = sweep.finish()
    assert rc == 2 and "Traceback" not in out, out[-3000:]
    assert len([x for x in out.splitlines() if x.startswith("paraling: error:")]) == 1
    study = optuna.load_study(study_name="mlo", storage=make_storage(str(tmp_path / "mlo" / "journal.log")))
    states = [t.state for t in study.trials]
    assert states == [TrialState.FAIL, TrialState.WAITING], states  # failed, and queued again: not charged
    assert "a service went away" in study.trials[0].user_attrs["fail_reason"]
    # the server is back (same store, another port): the re-run runs the queued trial and the rest
    url2, _ = mlflow_servers.start(tmp_path)
    again = subprocess.run(
        [sys.executable, "-m", "paraling.cli.main", "sweep", str(path), *overrides],
        cwd=tmp_path,
        env=_env(MLFLOW_TRACKING_URI=url2),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert again.returncode == 0, again.stderr[-3000:]
    assert "trials: 2 of 2 finished: 2 complete, 0 pruned, 0 failed, 1 retried" in again.stdout
    assert not [r for r in _runs(url2) if r.info.status == "RUNNING"]


def test_a_sweep_in_which_nothing_completed_exits_non_zero_and_so_does_its_rerun(
    tone_corpus: Path, tmp_path: Path, mlflow_uri: str, tiny_overrides: Callable[..., list[str]]
) -> None:
    path = _study(tmp_path, "nothing", n_trials=2)
    overrides = [*tiny_overrides(tone_corpus, tmp_path / "c", log_model=False), "trainer.lr_start=1e30"]
    for _ in range(2):
        with pytest.raises(SearchError, match=r"no trial completed \(2 failed, 0 pruned\): trial 0: TrainingError"):
            from paraling.cli.sweep import main as sweep_main

            sweep_main([str(path), *overrides])
    summary = run_sweep(load_study_spec(path), SweepOptions(overrides=overrides))
    assert not summary.ok and summary.complete == 0 and summary.stopped == "complete"
