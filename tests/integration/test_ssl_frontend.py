"""``features=ssl`` through the platform on the tiny tone corpus and a tiny random encoder saved like a real one:
``paraling train`` with every head, a sweep that extracts each recording once, resume, the model that records its
encoder and predicts with it (and refuses without it), and one ensemble of SSL and CNN runs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import optuna
import pytest
import yaml
from mlflow.tracking import MlflowClient

import paraling
from paraling.errors import ModelError, Pruned
from paraling.pipeline.experiment import run_experiment

Encoder = Callable[[str], Path]


def _ssl(corpus: Path, cache: Path, encoder: Path, *extra: str) -> list[str]:
    return [
        "corpus=csv",
        f"corpus.path={corpus}",
        "cv.folds=2",
        "trainer.epochs=2",
        f"cache_dir={cache}",
        "progress=never",
        "device=cpu",
        "features=ssl",
        f"features.model={encoder}",
        "windows.width=10",
        "windows.shift=5",
        *extra,
    ]


HEADS = {
    "ssl_head": ["model=ssl_head", "model.proj_dim=16", "model.fc_sizes=[16]"],
    "ssl_head_mean_adamw": [
        "model=ssl_head",
        "model.pooling=mean",
        "trainer.optimizer=adamw",
        "trainer.lr_start=0.003",
    ],
    "cnn": ["model=cnn", "model.channels=[8,8,8]", "model.fc_sizes=[16]"],
    "svm": ["model=svm"],
    "lr": ["model=lr", "model.baseline.pooling=mean"],
    "dnn": ["model=dnn", "model.baseline.dnn_epochs=3"],
}


def test_paraling_train_with_an_encoder_folder_logs_the_encoder(
    tone_corpus: Path, tiny_encoder: Encoder, tmp_path: Path, mlflow_uri: str
) -> None:
    encoder = tiny_encoder("wav2vec2-stable")
    args = _ssl(tone_corpus, tmp_path / "cache", encoder, *HEADS["ssl_head"])
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_uri, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "paraling.cli.main", "train", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    client = MlflowClient(mlflow_uri)
    (run,) = client.search_runs([client.get_experiment_by_name("paraling").experiment_id])
    assert run.info.status == "FINISHED" and run.data.tags["paraling.model_type"] == "ssl_head"
    identity = run.data.tags["paraling.encoder"]
    assert identity.startswith("folder:") and run.data.params["data.encoder"] == identity
    assert run.data.params["features.model"] == str(encoder) and run.data.params["features.layers"] == "all"
    assert run.data.metrics["features_computed"] == 36  # every recording of the corpus, once
    assert len(client.get_metric_history(run.info.run_id, "val_uar/fold0")) == 2  # per-epoch: what pruning reads
    spec = yaml.safe_load(
        Path(client.download_artifacts(run.info.run_id, "model/spec.json", str(tmp_path))).read_text()
    )
    assert spec["features"]["encoder_id"] == identity and spec["model"]["kind"] == "ssl_head"


@pytest.mark.parametrize("head", [h for h in HEADS if h != "ssl_head"])
def test_every_head_trains_over_the_encoder(
    head: str, tone_corpus: Path, tiny_encoder: Encoder, tmp_path: Path, compose_cfg
) -> None:
    cfg = compose_cfg(
        _ssl(tone_corpus, tmp_path / "cache", tiny_encoder("hubert"), *HEADS[head], "tracking.enabled=false")
    )
    result = run_experiment(cfg)
    assert np.isfinite(result.uar) and set(result.fold_uars) == {0, 1}
    assert result.oof.proba.shape == (36, 3)


def test_fine_tuning_the_top_layer_runs_and_resumes(
    tone_corpus: Path, tiny_encoder: Encoder, tmp_path: Path, mlflow_uri: str, compose_cfg
) -> None:
    args = _ssl(
        tone_corpus, tmp_path / "cache", tiny_encoder("hubert"), *HEADS["ssl_head"], "transfer=encoder",
        "transfer.layers=1", "trainer.checkpoint=true", "trainer.epochs=3",
    )  # fmt: skip

    class StopAfter:
        """Stops the run like a kill at fold 1, epoch 1 (the checkpoints of fold 0 and fold 1's first epoch stay)."""

        def on_epoch_end(self, fold: int, epoch: int, metrics: dict[str, float]) -> None:
            if (fold, epoch) == (1, 1):
                raise Pruned("stop")

    with pytest.raises(Pruned):
        run_experiment(compose_cfg(args), reporter=StopAfter())
    result = run_experiment(compose_cfg(args))
    client = MlflowClient(mlflow_uri)
    (run,) = client.search_runs([client.get_experiment_by_name("paraling").experiment_id])
    assert run.info.run_id == result.run_id and run.info.status == "FINISHED", "the stopped run was resumed"
    assert run.data.params["features.layers"] == "1" and run.data.params["model.finetune_layers"] == "1"
    assert run.data.params["model.encoder_lr_scale"] == "0.1"
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "train_loss/fold0")]
    assert sorted(set(steps)) == [0, 1, 2] and len(steps) == 3, "fold 0 was not trained again"


def test_a_sweep_over_heads_extracts_each_recording_once(
    tone_corpus: Path, tiny_encoder: Encoder, tmp_path: Path, mlflow_uri: str
) -> None:
    study = tmp_path / "ssl.yaml"
    spec = yaml.safe_load((paraling.config.SWEEPS_DIR / "ssl.yaml").read_text())
    spec |= {"study_name": "ssl", "n_trials": 4, "sampler": {"name": "random", "seed": 0}, "ensemble": None}
    spec["overrides"] = [o for o in spec["overrides"] if not o.startswith(("windows.", "trainer.epochs"))]
    study.write_text(yaml.safe_dump(spec))
    overrides = _ssl(tone_corpus, tmp_path / "cache", tiny_encoder("wav2vec2"))
    summary = paraling.sweep(study, [o for o in overrides if o != "features=ssl"])
    assert summary.complete + summary.pruned == 4 and summary.failed == 0
    client = MlflowClient(mlflow_uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()], max_results=100)
    trials = [r for r in runs if "paraling.sweep.trial" in r.data.tags]
    assert (
        len(trials) == 4
        and len({r.data.params["model.pooling"] + r.data.params["trainer.lr_start"] for r in trials}) == 4
    )
    computed = [r.data.metrics["features_computed"] for r in trials]
    assert sum(computed) == 36 and sorted(computed)[-1] == 36, "one extraction per recording across the study"
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(tmp_path / "ssl" / "journal.log"))
    )
    for trial in optuna.load_study(study_name="ssl", storage=storage).trials:
        assert trial.intermediate_values, "each trial reported its per-epoch validation UAR to the pruner"


def test_the_logged_model_predicts_with_its_encoder_and_refuses_another(
    tone_corpus: Path, tiny_encoder: Encoder, save_encoder: Callable[..., Path], tmp_path: Path, mlflow_uri: str,
    compose_cfg,
) -> None:  # fmt: skip
    encoder = tmp_path / "encoder"
    shutil.copytree(tiny_encoder("wav2vec2"), encoder)
    ssl = run_experiment(compose_cfg(_ssl(tone_corpus, tmp_path / "cache", encoder, *HEADS["ssl_head"])))
    cnn_args = [*_ssl(tone_corpus, tmp_path / "cache", encoder)[:6], "model.channels=[8,8,8]", "model.fc_sizes=[16]"]
    cnn = run_experiment(compose_cfg(cnn_args))
    ensemble = paraling.assemble_ensemble(run_ids=[ssl.run_id, cnn.run_id], method="all", register="mixed")
    assert len(ensemble.members) == 2 and 0.0 <= ensemble.report.selection_uar <= 1.0  # one ensemble of both
    wav = next(tone_corpus.parent.glob("wav/*.wav"))
    for uri in (f"runs:/{ssl.run_id}", "models:/mixed@champion"):  # the SSL run alone, and with the CNN
        (pred,) = paraling.load_model(uri).predict([wav])
        assert pred.label in ("low", "high", "noise") and abs(float(pred.proba.sum()) - 1.0) < 1e-6
    shutil.rmtree(encoder)
    save_encoder("wav2vec2", encoder, seed=7)  # another encoder at the same place
    with pytest.raises(
        ModelError, match=r"its encoder folder:\w+ is not available here .*but the model was trained on"
    ):
        paraling.load_model(f"runs:/{ssl.run_id}")
    shutil.rmtree(encoder)
    with pytest.raises(ModelError, match="is not available here .*holds no speech encoder|not available here"):
        paraling.load_model(f"runs:/{ssl.run_id}")
