"""Every shipped experiment composes, validates and runs (tiny), and every shipped study checks against the config,
the way lightning-hydra-template's tests/test_sweeps.py runs every experiment."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from paraling.config import CONF_DIR, SWEEPS_DIR
from paraling.config_checks import validate

EXPERIMENTS = sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml"))
STUDIES = sorted(p.stem for p in SWEEPS_DIR.glob("*.yaml"))
# the transfer rows need a pre-training run first: tests/integration/test_table1.py runs them with one
NEEDS_PRETRAINING = {"net4", "net5"}


def test_every_shipped_file_is_listed() -> None:
    assert {"svm", "rf", "net0", "net1", "net2", "net3", "net4", "net5", "paper", "pretrain_langid"} <= set(EXPERIMENTS)
    assert {"demo", "paper"} <= set(STUDIES)


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_composes_and_validates(name: str, compose_cfg) -> None:
    cfg = validate(compose_cfg([f"experiment={name}"]))
    assert cfg.name == name


@pytest.mark.parametrize("name", [e for e in EXPERIMENTS if e not in NEEDS_PRETRAINING and e != "pretrain_langid"])
def test_experiment_runs_on_a_tiny_corpus(name: str, tone_corpus: Path, tmp_path: Path, mlflow_uri: str, compose_cfg):
    from paraling.pipeline.experiment import run_experiment

    tiny = [
        f"experiment={name}",
        "corpus=csv",
        f"corpus.path={tone_corpus}",
        "trainer.epochs=1",
        "cv.folds=2",
        f"cache_dir={tmp_path / 'cache'}",
        "progress=never",
        "device=cpu",
    ]
    kind = compose_cfg([f"experiment={name}"]).model.kind  # each model's node has only its own keys
    tiny += {"cnn": ["model.fc_sizes=[16]", "model.channels=[4,4,4,4,4]"], "dnn": ["model.baseline.dnn_epochs=2"]}.get(
        kind, []
    )
    if name == "paper":
        tiny += ["features.n_mels=40"]  # 60 bands over 16 kHz tones work too, 40 keeps it quick
    result = run_experiment(compose_cfg(tiny))
    assert np.isfinite(result.uar) and result.run_id and set(result.fold_uars) == {0, 1}


def test_pretraining_experiment_runs_on_its_own_corpus(tmp_path: Path, mlflow_uri: str, compose_cfg) -> None:
    from paraling.data.recipes.langid import prepare_langid
    from paraling.pipeline.experiment import run_experiment

    langid = prepare_langid(tmp_path / "langid", n_speakers=4, utts_per_language=2)
    cfg = compose_cfg(
        [
            "experiment=pretrain_langid",
            f"corpus.path={langid}",
            "trainer.epochs=1",
            "model.channels=[4,4,4]",
            "model.fc_sizes=[16]",
            f"cache_dir={tmp_path / 'cache'}",
            "progress=never",
        ]
    )
    result = run_experiment(cfg)
    assert np.isfinite(result.uar) and len(result.oof.classes) == 7


@pytest.mark.parametrize("name", STUDIES)
def test_shipped_study_checks_against_the_config(name: str) -> None:
    from paraling.cli.sweep import main as sweep_main

    assert sweep_main([name, "--check"]) == 0
