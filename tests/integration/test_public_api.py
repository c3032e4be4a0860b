"""The library surface: a script that uses only the names ``import paraling`` offers composes a configuration,
loads the corpus, runs an experiment and a study, assembles an ensemble, loads a model and predicts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import paraling


def test_import_stays_fast_and_light() -> None:
    code = "import sys, paraling; print(sorted(m for m in ('torch', 'mlflow', 'optuna', 'hydra') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]", out
    assert set(paraling.__all__) <= set(dir(paraling))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        paraling.nope  # noqa: B018


@pytest.mark.slow
def test_a_script_with_only_the_public_names(tone_corpus: Path, tmp_path: Path, mlflow_uri: str) -> None:
    tiny = [
        "corpus=csv",
        f"corpus.path={tone_corpus}",
        "trainer.epochs=2",
        "cv.folds=2",
        "model.channels=[8,8,8]",
        "model.fc_sizes=[16]",
        f"cache_dir={tmp_path / 'cache'}",
        "progress=never",
        "trainer.checkpoint=false",
    ]
    cfg = paraling.compose(tiny)
    manifest = paraling.load_corpus(cfg)
    assert isinstance(manifest, paraling.Manifest) and len(manifest) == 36
    result = paraling.run_experiment(cfg)
    assert isinstance(result, paraling.RunResult) and result.run_id and 0.0 <= result.uar <= 1.0

    study = tmp_path / "tiny.yaml"
    study.write_text(
        yaml.safe_dump(
            {
                "study_name": "tiny",
                "n_trials": 2,
                "pruner": "none",
                "space": {"windows.width": [11, 13]},
                "sampler": {"name": "grid"},
            }
        )
    )
    summary = paraling.sweep(study, tiny)
    assert isinstance(summary, paraling.SweepSummary) and summary.complete == 2 and summary.ok

    ensemble = paraling.assemble_ensemble("paraling", method="all", log_run=False)
    assert len(ensemble.members) >= 2

    model = paraling.load_model(f"runs:/{result.run_id}")
    assert isinstance(model, paraling.Predictor)
    wav = Path(manifest[0].path)
    (pred,) = model.predict([wav])
    assert pred.label in manifest.labels and abs(float(pred.proba.sum()) - 1.0) < 1e-6

    with pytest.raises(paraling.ParalingError, match="model.n_blocks"):
        paraling.compose(["model.n_blocks=0"])  # the public compose validates
