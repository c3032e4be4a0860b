"""`paraling sweep --gpus 0,1 --trials-per-gpu 2`: four worker processes, each confined to its GPU, every trial and
MLflow run saying which GPU it ran on. Checked on the CPU through the environment each worker process sees."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import optuna
import pytest
import yaml
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from paraling.cli.sweep import main as sweep_main
from paraling.search.storage import make_storage


@pytest.mark.slow
def test_gpus_and_trials_per_gpu_confine_each_worker(
    tone_corpus: Path, tmp_path: Path, mlflow_uri: str, tiny_overrides: Callable[..., list[str]]
) -> None:
    path = tmp_path / "gpus.yaml"
    space = {"windows.width": [11, 13, 15, 17]}
    path.write_text(
        yaml.safe_dump({"study_name": "gpus", "pruner": "none", "sampler": {"name": "grid"}, "space": space})
    )
    argv = [str(path), "--gpus", "0,1", "--trials-per-gpu", "2", "--n-trials", "4"]
    assert sweep_main([*argv, *tiny_overrides(tone_corpus, tmp_path / "c", log_model=False)]) == 0
    study = optuna.load_study(study_name="gpus", storage=make_storage(str(tmp_path / "gpus" / "journal.log")))
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 4
    # trial_gpu() read each trial's own CUDA_VISIBLE_DEVICES: exactly one id, one of the two given
    assert {t.user_attrs["gpu"] for t in study.trials} <= {"0", "1"}
    client = MlflowClient()
    for t in study.trials:
        run = client.get_run(t.user_attrs["mlflow_run_id"])
        assert run.data.tags["paraling.gpu"] == t.user_attrs["gpu"] and run.info.status == "FINISHED"


def test_no_gpus_keeps_one_worker_in_process(
    tone_corpus: Path, tmp_path: Path, mlflow_uri: str, tiny_overrides: Callable[..., list[str]]
) -> None:
    path = tmp_path / "cpu.yaml"
    path.write_text(
        yaml.safe_dump({"study_name": "cpu", "pruner": "none", "n_trials": 1, "space": {"windows.width": [11]}})
    )
    assert (
        sweep_main([str(path), "--gpus", "none", "--n-trials", "1", *tiny_overrides(tone_corpus, tmp_path / "c")]) == 0
    )
    study = optuna.load_study(study_name="cpu", storage=make_storage(str(tmp_path / "cpu" / "journal.log")))
    (trial,) = study.trials
    assert trial.state == TrialState.COMPLETE and "gpu" not in trial.user_attrs
