"""A sweep stopped during its last trial resumes (Ctrl-C or a killed worker), and a resumed sampler draws anew."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from paraling.search import SweepOptions, load_study_spec, run_sweep
from paraling.search.recovery import WORKER_ATTR, worker_identity
from paraling.search.storage import make_storage

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _study_file(folder: Path, name: str, **fields: Any) -> Path:
    path = folder / f"{name}.yaml"
    fields = {"study_name": name, "pruner": "none", **fields}
    path.write_text(yaml.safe_dump(fields, sort_keys=False))
    return path


def _load(path: Path) -> optuna.Study:
    return optuna.load_study(study_name=path.stem, storage=make_storage(str(path.parent / path.stem / "journal.log")))


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


@pytest.mark.parametrize("how", ["ctrl-c", "kill -9"])
def test_a_sweep_stopped_during_its_last_trial_resumes(
    how: str,
    tmp_path: Path,
    tone_corpus: Path,
    mlflow_uri: str,
    monkeypatch: pytest.MonkeyPatch,
    tiny_overrides: Callable[..., list[str]],
) -> None:
    path = _study_file(
        tmp_path, "last", space={"windows.width": [11, 13]}, sampler={"name": "random", "seed": 0}, n_trials=1
    )
    opts = SweepOptions(overrides=tiny_overrides(tone_corpus, tmp_path / "cache", log_model=False))
    if how == "ctrl-c":
        from paraling.pipeline import experiment

        def interrupted(*a: Any, **k: Any) -> Any:
            raise KeyboardInterrupt

        with monkeypatch.context() as m:
            m.setattr(experiment, "run_experiment", interrupted)
            first = run_sweep(load_study_spec(path), opts)
        assert first.stopped == "interrupted"
    else:  # the worker died with its trial RUNNING (SIGKILL, OOM killer): a trial owned by a pid that is gone
        from paraling.search.runner import resolve_storage_url
        from paraling.search.storage import create_or_load_study

        spec = load_study_spec(path)
        study = create_or_load_study(resolve_storage_url(spec), spec)
        t = study.ask()
        spec.space.suggest(t)
        ident = {**worker_identity(), "pid": _dead_pid(), "host": socket.gethostname()}
        make_storage(resolve_storage_url(spec)).set_trial_system_attr(t._trial_id, WORKER_ATTR, ident)
    summary = run_sweep(load_study_spec(path), opts)
    assert summary.stopped == "complete" and summary.complete == 1, summary.format()
    states = [t.state for t in _load(path).trials]
    assert states == [TrialState.FAIL, TrialState.COMPLETE]
    again = run_sweep(load_study_spec(path), opts)  # nothing left to do: still complete, no new trial
    assert again.stopped == "complete" and len(_load(path).trials) == 2


def test_a_resumed_study_does_not_repeat_its_parameter_sets(
    tmp_path: Path, tone_corpus: Path, mlflow_uri: str, tiny_overrides: Callable[..., list[str]]
) -> None:
    path = _study_file(
        tmp_path,
        "reseed",
        space={"model.dropout_fc": {"type": "float", "low": 0.0, "high": 0.5}},
        sampler={"name": "random", "seed": 7},
        n_trials=2,
    )
    overrides = tiny_overrides(tone_corpus, tmp_path / "cache", log_model=False)
    run_sweep(load_study_spec(path), SweepOptions(overrides=overrides))
    run_sweep(load_study_spec(path), SweepOptions(overrides=overrides, n_trials=4))
    values = [t.params["model.dropout_fc"] for t in _load(path).trials]
    assert len(values) == 4 and len(set(values)) == 4, values
