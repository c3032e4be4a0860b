"""`paraling sweep --gpus ... --trials-per-gpu K` where no GPU is: refused before anything runs (a GPU asked for is
never silently replaced by the CPU), and `--gpus none` keeps one worker in process. The same sweep on a real GPU, four
workers on GPU 0, is in tests/gpu/test_cuda.py (scripts/gpu-check.sh runs it)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import optuna
import pytest
import torch
import yaml
from optuna.trial import TrialState

from paraling.cli.main import main as cli_main
from paraling.cli.sweep import main as sweep_main
from paraling.search.storage import make_storage


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_gpus_are_refused_where_cuda_is_absent(
    tone_corpus: Path, tmp_path: Path, tiny_overrides: Callable[..., list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "gpus.yaml"
    study = {"study_name": "gpus", "pruner": "none", "n_trials": 4, "space": {"windows.width": [11, 13]}}
    path.write_text(yaml.safe_dump(study))
    argv = ["sweep", str(path), "--gpus", "0,1", "--trials-per-gpu", "2", "--n-trials", "4"]
    with pytest.raises(SystemExit) as exc:
        cli_main([*argv, *tiny_overrides(tone_corpus, tmp_path / "c", log_model=False)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "no CUDA GPU is visible here" in err and "Traceback" not in err
    assert not (tmp_path / "gpus").exists()  # refused before the study was created


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
