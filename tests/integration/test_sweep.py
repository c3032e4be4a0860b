"""``paraling sweep`` end to end on the tiny tone corpus: pruning, grid, MLflow parent/child, resume, failures, SIGKILL.

Every trial is tiny (1-2 epochs, 2 speaker folds, 8-channel CNN); in-process single workers except the SIGKILL and
PostgreSQL tests. Scale-out for real (mark ``service``): a throw-away PostgreSQL cluster with 2 sweep workers, and an
``mlflow server``, both on 127.0.0.1 on a free port in a temp folder, stopped and removed afterwards. PostgreSQL
refuses to run as root, so under root the cluster runs as the ``postgres`` (or ``nobody``) user.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from paraling.cli.sweep import main as sweep_main
from paraling.errors import SearchError
from paraling.search import SweepOptions, load_study_spec, run_sweep
from paraling.search.recovery import WORKER_ATTR
from paraling.search.storage import make_storage

optuna.logging.set_verbosity(optuna.logging.WARNING)
MLFLOW_STATUS = {"COMPLETE": {"FINISHED"}, "PRUNED": {"KILLED"}, "FAIL": {"FAILED", "KILLED"}}


@pytest.fixture(scope="module")
def feature_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Feature cache shared by the trials of this module (features are computed once)."""
    return tmp_path_factory.mktemp("sweep-cache")


def tiny(corpus: Path, cache: Path, epochs: int | None = 1) -> list[str]:
    """Overrides for a trial of a few seconds on 2 CPU cores."""
    ov = [
        "corpus=csv",
        f"corpus.path={corpus}",
        "cv.folds=2",
        "model.channels=[8,8,8,8]",
        "model.fc_sizes=[32]",
        "tracking.log_model=false",
        f"cache_dir={cache}",
    ]
    return ov + ([f"trainer.epochs={epochs}"] if epochs else [])


def write_study(folder: Path, name: str, **fields: Any) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"study_name": name, **fields}, sort_keys=False))
    return path


def load(path: Path) -> optuna.Study:
    from paraling.search.storage import make_storage

    return optuna.load_study(study_name=path.stem, storage=make_storage(str(path.parent / path.stem / "journal.log")))


def sweep_runs(uri: str) -> tuple[Any, list[Any]]:
    """(parent run, child runs) of the only sweep in the store."""
    client = MlflowClient(uri)
    runs = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id], max_results=500)]
    parents = [r for r in runs if r.data.tags.get("paraling.role") == "sweep"]
    assert len(parents) == 1, [r.info.run_name for r in runs]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert len(children) + 1 == len(runs), "every run is the parent or one of its children"
    return parents[0], children


def assert_states_match(study: optuna.Study, children: list[Any]) -> None:
    by_trial = {int(r.data.tags["paraling.sweep.trial"]): r for r in children}
    assert sorted(by_trial) == [t.number for t in study.trials]
    for t in study.trials:
        run = by_trial[t.number]
        assert run.data.tags["paraling.state"] == t.state.name, (t.number, run.data.tags)
        assert run.info.status in MLFLOW_STATUS[t.state.name], (t.number, run.info.status)
        assert run.info.run_name == f"{study.study_name}-{t.number:03d}"


def test_grid_study_prunes_and_builds_parent_child_runs(
    tmp_path: Path, tone_corpus: Path, feature_cache: Path, mlflow_uri: str
) -> None:
    # steps = fold * epochs + epoch: 1-epoch trials report steps 0-1 (< n_warmup_steps, never pruned), 2-epoch trials
    # reach step 2 at fold 1 where val_uar < 1.01 always prunes -> exactly 2 COMPLETE and 2 PRUNED, deterministic.
    path = write_study(
        tmp_path,
        "grid",
        space={"trainer.epochs": [1, 2], "windows.width": [11, 15]},
        sampler={"name": "grid"},
        pruner={"name": "threshold", "lower": 1.01, "n_warmup_steps": 2},
    )
    summary = run_sweep(load_study_spec(path), SweepOptions(overrides=tiny(tone_corpus, feature_cache, None)))
    assert (summary.complete, summary.pruned, summary.failed, summary.stopped) == (2, 2, 0, "complete")
    study = load(path)
    points = {(t.params["trainer.epochs"], t.params["windows.width"]) for t in study.trials}
    assert len(points) == 4, "each grid point exactly once"
    for t in study.trials:
        assert t.state == (TrialState.COMPLETE if t.params["trainer.epochs"] == 1 else TrialState.PRUNED)
    pruned = [t for t in study.trials if t.state == TrialState.PRUNED]
    assert all(max(t.intermediate_values) == 2 for t in pruned)

    parent, children = sweep_runs(mlflow_uri)
    assert len(children) == 4
    assert_states_match(study, children)
    tags = parent.data.tags
    assert parent.info.status == "FINISHED"
    assert tags["paraling.sweep.study"] == "grid" and tags["paraling.sweep.sampler"].startswith("grid(")
    assert '"windows.width"' in tags["paraling.sweep.space"] and tags["paraling.sweep.storage"].endswith("journal.log")
    assert (
        tags["paraling.sweep.best_reproduce"].startswith("paraling train ")
        and "trainer.epochs=1" in tags["paraling.sweep.best_reproduce"]
    )
    assert parent.data.metrics["best_value"] == pytest.approx(summary.best_value)
    assert parent.data.metrics["n_pruned"] == 2
    assert study.user_attrs["mlflow_parent_run_id"] == parent.info.run_id
    client = MlflowClient(mlflow_uri)
    plots = {f.path for f in client.list_artifacts(parent.info.run_id, "plots")}
    assert {"plots/optimization_history.png", "plots/parallel_coordinate.png"} <= plots
    best_child = next(r for r in children if r.data.tags.get("paraling.sweep.best") == "true")
    assert best_child.data.tags["paraling.sweep.trial"] == str(summary.best_number)
    assert "windows.width" in best_child.data.params and "val_uar/fold1" in best_child.data.metrics
    note = tags["mlflow.note.content"]  # the parent's run page names the best trial and links its run
    assert f"(trial {summary.best_number} ([its run](#/experiments/" in note
    assert f"/runs/{best_child.info.run_id}))" in note and "Reproduce the best trial: `paraling train " in note
    printed = summary.format()  # the printed summary links the parent run's page in the UI
    assert f"/#/experiments/{parent.info.experiment_id}/runs/{parent.info.run_id}?workflowType=" in printed
    assert f"mlflow ui --backend-store-uri {mlflow_uri}" in printed


def test_study_ensemble_block_assembles_once_under_the_parent(
    tmp_path: Path, tone_corpus: Path, feature_cache: Path, mlflow_uri: str
) -> None:
    path = write_study(
        tmp_path,
        "ens",
        space={"windows.width": [11, 15]},
        sampler={"name": "grid"},
        pruner={"name": "none"},
        ensemble={"method": "all", "combiner": "harmonic"},
    )
    spec = load_study_spec(path)
    assert spec.ensemble is not None and spec.ensemble.combiner == "harmonic"
    run_sweep(spec, SweepOptions(overrides=tiny(tone_corpus, feature_cache)))
    parent, children = sweep_runs(mlflow_uri)
    ensembles = [r for r in children if r.data.tags.get("paraling.kind") == "ensemble"]
    trials = [r for r in children if "paraling.sweep.trial" in r.data.tags]
    assert len(ensembles) == 1 and len(trials) == 2 and len(children) == 3
    (ens,) = ensembles
    tags = parent.data.tags
    assert tags["paraling.sweep.ensemble_run_id"] == ens.info.run_id and ens.info.status == "FINISHED"
    assert sorted(ens.data.tags["paraling.members"].split(",")) == sorted(r.info.run_id for r in trials)
    assert ens.data.params["combiner"] == "harmonic" and ens.data.params["study"] == "ens"
    assert float(tags["paraling.sweep.ensemble_uar"]) == pytest.approx(parent.data.metrics["ensemble_uar"], abs=1e-4)
    assert f"/runs/{ens.info.run_id}))" in tags["mlflow.note.content"]  # the parent page links the ensemble
    run_sweep(spec, SweepOptions(overrides=tiny(tone_corpus, feature_cache)))  # resumed: nothing left to do
    assert len(sweep_runs(mlflow_uri)[1]) == 3, "the ensemble is assembled once"


def test_resume_runs_only_missing_trials(
    tmp_path: Path, tone_corpus: Path, feature_cache: Path, mlflow_uri: str, capsys: pytest.CaptureFixture
) -> None:
    path = write_study(
        tmp_path,
        "resume",
        space={"windows.width": [11, 13, 15, 17], "model.dropout_fc": {"type": "float", "low": 0.0, "high": 0.5}},
        sampler={"name": "random", "seed": 1},
        pruner="none",
        n_trials=2,
    )
    first = run_sweep(load_study_spec(path), SweepOptions(overrides=tiny(tone_corpus, feature_cache)))
    assert first.complete == 2
    parent_id = first.parent_run_id
    assert sweep_main([str(path), "--n-trials", "3", *tiny(tone_corpus, feature_cache)]) == 0
    out = capsys.readouterr().out
    assert "trials: 3 of 3 finished: 3 complete" in out and "reproduce: paraling train" in out
    study = load(path)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 3
    parent, children = sweep_runs(mlflow_uri)
    assert parent.info.run_id == parent_id and parent.info.status == "FINISHED"
    assert_states_match(study, children)


def test_failing_trials_are_recorded_and_the_sweep_goes_on(
    tmp_path: Path, tone_corpus: Path, feature_cache: Path, mlflow_uri: str
) -> None:
    # 101-frame windows on 0.6 s clips under short_policy=error (WindowError in the trial: the config checks cannot
    # know the clips' lengths); lr 1e30 diverges (TrainingError: NaN loss)
    path = write_study(
        tmp_path,
        "faults",
        space={"windows.width": [11, 101], "trainer.lr_start": [0.02, 1.0e30]},
        sampler={"name": "grid"},
        pruner="none",
        failure_budget=5,
        overrides=["windows.short_policy=error"],
    )
    summary = run_sweep(load_study_spec(path), SweepOptions(overrides=tiny(tone_corpus, feature_cache)))
    assert (summary.complete, summary.failed, summary.stopped) == (1, 3, "complete")
    study = load(path)
    reasons = {
        (t.params["windows.width"], t.params["trainer.lr_start"]): t.user_attrs.get("fail_reason", "")
        for t in study.trials
    }
    assert "WindowError" in reasons[(101, 0.02)] and "windows.width=101" in reasons[(101, 0.02)]
    assert reasons[(11, 0.02)] == ""
    assert "TrainingError" in reasons[(11, 1.0e30)] and "lower trainer.lr_start" in reasons[(11, 1.0e30)]
    _, children = sweep_runs(mlflow_uri)
    assert_states_match(study, children)
    failed = [r for r in children if r.data.tags["paraling.state"] == "FAIL"]
    assert len(failed) == 3 and all(r.data.tags.get("paraling.error") for r in failed)


def test_failure_budget_stops_a_sweep_that_fails_everything(
    tmp_path: Path, tone_corpus: Path, feature_cache: Path, mlflow_uri: str
) -> None:
    path = write_study(
        tmp_path,
        "hopeless",
        space={"trainer.lr_start": {"type": "float", "low": 1e29, "high": 1e30}},  # every trial diverges
        sampler={"name": "random"},
        n_trials=8,
        failure_budget=2,
    )
    with pytest.raises(SearchError, match=r"2 trials failed, failure budget 2 spent \(trial 0: TrainingError"):
        sweep_main([str(path), *tiny(tone_corpus, feature_cache)])
    assert [t.state for t in load(path).trials] == [TrialState.FAIL] * 2
    parent, children = sweep_runs(mlflow_uri)
    assert parent.info.status == "FAILED" and len(children) == 2


@pytest.mark.slow
def test_sigkilled_worker_trial_fails_is_retried_and_nothing_stays_running(
    tmp_path: Path, tone_corpus: Path, feature_cache: Path, mlflow_uri: str
) -> None:
    path = write_study(
        tmp_path,
        "kill",
        space={"windows.width": [11, 13, 15, 17, 19]},
        sampler={"name": "random"},
        pruner="none",
        n_trials=4,
    )
    cmd = [
        sys.executable,
        "-m",
        "paraling.cli.main",
        "sweep",
        str(path),
        "--workers",
        "2",
        *tiny(tone_corpus, feature_cache, epochs=8),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path)
    journal = path.parent / "kill" / "journal.log"
    victim = None
    deadline = time.time() + 180
    try:
        while victim is None and time.time() < deadline and proc.poll() is None:
            time.sleep(0.5)
            if not journal.exists():
                continue
            try:
                trials = load(path).get_trials(states=(TrialState.RUNNING,))
            except Exception:  # the study may not exist yet
                continue
            for t in trials:
                w = t.system_attrs.get(WORKER_ATTR)
                if w and w["pid"] != proc.pid and t.datetime_start and time.time() - t.datetime_start.timestamp() > 1:
                    os.kill(w["pid"], signal.SIGKILL)
                    victim = t.number
                    break
        out, _ = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert victim is not None, out[-3000:]
    assert proc.returncode == 0, out[-3000:]
    study = load(path)
    assert not study.get_trials(states=(TrialState.RUNNING, TrialState.WAITING))
    killed = study.trials[victim]
    assert killed.state == TrialState.FAIL and "died" in killed.user_attrs["fail_reason"]
    retry = [t for t in study.trials if t.system_attrs.get("failed_trial") == victim]
    assert len(retry) == 1 and retry[0].state == TrialState.COMPLETE and retry[0].params == killed.params
    assert sum(t.state == TrialState.COMPLETE for t in study.trials) == 4
    _, children = sweep_runs(mlflow_uri)
    assert not [r for r in children if r.info.status == "RUNNING"]
    assert_states_match(study, children)
    assert "killed by signal 9" in out and "starting a replacement" in out


@pytest.mark.service
def test_postgresql_storage_with_two_worker_processes(
    tmp_path: Path, tone_corpus: Path, feature_cache: Path, mlflow_uri: str, postgres_url: str
) -> None:
    path = write_study(
        tmp_path,
        "pg",
        space={"windows.width": [11, 13, 15, 17]},
        sampler={"name": "random", "seed": 0},
        pruner="none",
        n_trials=4,
    )
    opts = SweepOptions(workers=2, storage=postgres_url, overrides=tiny(tone_corpus, feature_cache, epochs=3))
    summary = run_sweep(load_study_spec(path), opts)
    assert (summary.complete, summary.failed, summary.stopped) == (4, 0, "complete")
    assert summary.storage == postgres_url  # no password here; mask_secrets keeps it as is
    storage = make_storage(postgres_url)
    assert isinstance(storage, optuna.storages.RDBStorage) and storage.heartbeat_interval
    study = optuna.load_study(study_name="pg", storage=storage)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 4
    pids = {t.system_attrs[WORKER_ATTR]["pid"] for t in study.trials}
    assert os.getpid() not in pids and 1 <= len(pids) <= 2
    _, children = sweep_runs(mlflow_uri)
    assert_states_match(study, children)
    # the same command again joins the same study and finds nothing to do
    again = run_sweep(load_study_spec(path), opts)
    assert again.complete == 4 and len(optuna.load_study(study_name="pg", storage=storage).trials) == 4


@pytest.mark.service
def test_sweep_logs_through_an_mlflow_server(
    tmp_path: Path, tone_corpus: Path, feature_cache: Path, mlflow_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    path = write_study(tmp_path, "srv", space={"windows.width": [11, 15]}, sampler={"name": "grid"}, pruner="none")
    summary = run_sweep(load_study_spec(path), SweepOptions(overrides=tiny(tone_corpus, feature_cache)))
    assert summary.complete == 2 and summary.tracking_uri == mlflow_server
    parent, children = sweep_runs(mlflow_server)
    assert parent.info.status == "FINISHED" and len(children) == 2
    assert all(r.info.status == "FINISHED" and r.data.tags["paraling.state"] == "COMPLETE" for r in children)
    client = MlflowClient(mlflow_server)
    assert "plots/optimization_history.png" in {f.path for f in client.list_artifacts(parent.info.run_id, "plots")}
    assert {f.path for f in client.list_artifacts(children[0].info.run_id)} >= {"config.yaml", "oof"}


def test_hydra_sweeper_plugin_gives_the_same_structure(
    tmp_path: Path, tone_corpus: Path, feature_cache: Path, mlflow_uri: str
) -> None:
    # Same deterministic grid as above, through `paraling train -m` and the joblib launcher (2 jobs per batch, each in
    # its own process): the job loads its trial from the storage and is pruned there.
    path = write_study(
        tmp_path,
        "hydra",
        space={"trainer.epochs": [1, 2], "windows.width": [11]},
        sampler={"name": "grid"},
        pruner={"name": "threshold", "lower": 1.01, "n_warmup_steps": 2},
    )
    cmd = [
        sys.executable,
        "-m",
        "paraling.cli.main",
        "train",
        "-m",
        "hydra/sweeper=paraling_optuna",
        f"+sweep={path}",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        "hydra.sweeper.n_jobs=2",
        f"hydra.sweep.dir={tmp_path / 'multirun'}",
        *tiny(tone_corpus, feature_cache, None),
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    assert "trials: 2 of 2 finished: 1 complete, 1 pruned, 0 failed" in r.stdout
    study = load(path)
    assert {t.params["trainer.epochs"]: t.state for t in study.trials} == {1: TrialState.COMPLETE, 2: TrialState.PRUNED}
    parent, children = sweep_runs(mlflow_uri)
    assert parent.info.status == "FINISHED" and parent.data.tags["paraling.reproduce"].startswith("paraling train -m")
    assert_states_match(study, children)
    line = next(r for r in children if r.data.tags["paraling.state"] == "COMPLETE").data.tags["paraling.reproduce"]
    assert "trainer.epochs=1" in line and "PARALING_SWEEP_TRIAL" not in line and "sweep=" not in line
    results = yaml.safe_load((tmp_path / "multirun" / "optimization_results.yaml").read_text())
    assert results["best_params"] == {"trainer.epochs": 1, "windows.width": 11}
    # joblib reuses its workers: no CUDA_VISIBLE_DEVICES is forced on them, so no trial claims a GPU
    assert all("gpu" not in t.user_attrs for t in study.trials)
    assert all("paraling.gpu" not in c.data.tags for c in children)
    complete = next(c for c in children if c.data.tags["paraling.state"] == "COMPLETE")
    assert complete.data.tags["paraling.training.capture"] == "eager"  # the step that ran (CPU: eager)


def test_hydra_sweeper_refuses_gpus_its_launcher_cannot_confine(tmp_path: Path, tone_corpus: Path) -> None:
    path = write_study(tmp_path, "hgpu", space={"windows.width": [11]}, pruner="none", n_trials=1)
    cmd = [sys.executable, "-m", "paraling.cli.main", "train", "-m", "hydra/sweeper=paraling_optuna", f"+sweep={path}"]
    cmd += ["hydra/launcher=joblib", "hydra.sweeper.gpus='3,5'", f"hydra.sweep.dir={tmp_path / 'multirun'}"]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert r.returncode != 0
    assert "cannot confine a job to a GPU" in r.stdout + r.stderr and "Traceback" not in r.stdout + r.stderr


@pytest.mark.slow
def test_two_sweep_commands_started_together_sample_different_parameters(
    tmp_path: Path, tone_corpus: Path, feature_cache: Path, mlflow_uri: str
) -> None:
    path = write_study(
        tmp_path,
        "twin",
        space={"trainer.lr_start": {"type": "float", "low": 0.001, "high": 0.1, "log": True}},
        sampler={"name": "random", "seed": 0},
        pruner="none",
        n_trials=4,
    )
    cmd = [sys.executable, "-m", "paraling.cli.main", "sweep", str(path), *tiny(tone_corpus, feature_cache)]
    procs = [subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for _ in range(2)]
    outs = [p.communicate(timeout=600)[0].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    values = [t.params["trainer.lr_start"] for t in load(path).trials]
    assert len(values) == 4 and len(set(values)) == 4, values  # no parameter set ran twice


def test_a_study_whose_condition_names_a_later_key_runs(
    tmp_path: Path, tone_corpus: Path, feature_cache: Path, mlflow_uri: str
) -> None:
    """A study file re-written by a YAML tool that sorts keys (the condition's key now comes first) runs as written."""
    path = tmp_path / "sorted.yaml"
    path.write_text(
        "study_name: sorted\nn_trials: 2\npruner: none\nsampler: {name: random, seed: 0}\nspace:\n"
        "  model.dropout_conv.{i}: {type: float, low: 0.0, high: 0.5, foreach: {i: [0, 1]}, "
        'condition: "{i} < model.n_blocks"}\n'
        "  model.n_blocks: {type: int, low: 1, high: 2}\n"
    )
    summary = run_sweep(load_study_spec(path), SweepOptions(overrides=tiny(tone_corpus, feature_cache)))
    assert summary.complete == 2 and summary.ok
    for t in load(path).trials:
        blocks = t.params["model.n_blocks"]
        assert {k for k in t.params if k.startswith("model.dropout_conv")} == {
            f"model.dropout_conv.{i}" for i in range(blocks)
        }
