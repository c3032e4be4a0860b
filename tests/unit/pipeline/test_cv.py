"""run_cv over a FoldRunner that needs no audio: fold UARs come back as data, the run's files follow the runner."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import mlflow
import numpy as np
import pytest
from omegaconf import DictConfig

from paraling.data.manifest import Manifest, Utterance
from paraling.data.splits import FoldPlan
from paraling.pipeline.cv import CVData, FoldOutput, WindowScores, fold_metric, run_cv
from paraling.tracking.tracker import RunTracker


class Oracle:
    """Right on every test utterance of fold 0, wrong on every one of fold 1 (2 classes, 2 speakers per fold)."""

    def __init__(self, methods: tuple[str, ...] = ("utterance",), windows: bool = False) -> None:
        self.methods, self.primary, self.embedding_dim, self.windows = methods, methods[0], 3, windows
        self.logged_model = False

    def prepare(self) -> CVData:
        utts = [
            Utterance(f"u{i}", f"/nowhere/u{i}.wav", "ab"[i % 2], f"s{i // 2}", 1.0, fold=(i // 4) % 2)
            for i in range(8)
        ]
        self.y = np.array([i % 2 for i in range(8)])
        return CVData(Manifest(utts), ["a", "b"], self.y, tags={"paraling.model_type": "oracle"})

    def fit_fold(self, plan: FoldPlan, log_epoch: Callable[[int, dict[str, float]], None]) -> FoldOutput:
        truth = self.y[plan.test] if plan.fold == 0 else 1 - self.y[plan.test]
        p = np.eye(2, dtype=np.float32)[truth]
        log_epoch(0, {"train_loss": 1.0 + plan.fold})
        w = WindowScores(np.repeat(p, 2, 0), np.repeat(np.arange(len(plan.test)), 2), np.zeros(2 * len(plan.test)))
        return FoldOutput(
            scores={m: p for m in self.methods},
            metrics={"best_epoch": 7.0},
            embeddings=np.full((len(plan.test), 3), plan.fold, np.float32),
            windows=w if self.windows else None,
            history=[{"train_loss": 1.0 + plan.fold}],
            info={"capture": "graph" if plan.fold == 0 else "eager (graph capture failed)"},
        )

    def log_model(self, tracker: RunTracker, tmp: Path) -> None:
        self.logged_model = True


@pytest.fixture()
def cfg(compose_cfg: Callable[..., DictConfig], mlflow_uri: str) -> DictConfig:
    return compose_cfg(["corpus.negative_class=null", "tracking.log_model=true"])


def test_fold_uars_are_data_and_logged_per_fold(cfg: DictConfig) -> None:
    runner = Oracle()
    result = run_cv(cfg, runner, runner.prepare())
    assert result.fold_uars == {0: 1.0, 1: 0.0}
    assert result.uar == pytest.approx(0.5) and runner.logged_model
    run = mlflow.get_run(result.run_id)
    assert run.data.metrics[fold_metric(0, "uar")] == 1.0 and run.data.metrics[fold_metric(1, "best_epoch")] == 7.0
    assert run.data.tags["paraling.model_type"] == "oracle"
    assert "uar_utterance" not in run.data.metrics  # one method: no per-method UARs
    (ds,) = run.inputs.dataset_inputs  # the runs table's Dataset column names the corpus
    assert ds.dataset.name == cfg.corpus.name and ds.dataset.digest == runner.prepare().manifest.digest()[:36]
    assert [(t.key, t.value) for t in ds.tags] == [("mlflow.data.context", "training")]
    note = run.data.tags["mlflow.note.content"]  # the run page's description
    assert note.startswith("**Out-of-fold UAR 0.500**") and "Reproduce: `paraling train`" in note
    hist = mlflow.MlflowClient().get_metric_history(result.run_id, fold_metric(1, "train_loss"))
    assert [(m.step, m.value) for m in hist] == [(0, 2.0)]
    # one chart section per quantity in the MLflow UI: train_loss/fold0, train_loss/fold1, train_loss/mean
    sections = {k.split("/")[0] for k in run.data.metrics if "/" in k}
    assert {"train_loss/fold1", "train_loss/mean", "uar/fold0"} <= set(run.data.metrics) and "train_loss" in sections
    assert not [k for k in run.data.metrics if k.startswith("fold")]  # no fold0_... names any more
    assert run.data.tags["mlflow.runName"] == f"{cfg.name}-seed{cfg.seed}"
    assert list(result.oof.utt_ids) == [f"u{i}" for i in range(8)] and not result.oof.windows
    # how the folds were trained, as it ran: a fold whose graph capture fell back is visible on the run
    assert run.data.tags["paraling.training.capture"] == "graph; eager (graph capture failed)"
    assert "- training step (trainer.capture, as run): graph; eager (graph capture failed)" in note


def test_a_cpu_run_records_the_step_it_ran(tiny_cfg: Callable[..., DictConfig], mlflow_uri: str) -> None:
    from paraling.pipeline.experiment import run_experiment

    result = run_experiment(tiny_cfg("trainer.capture=graph"))  # graph asked for on the CPU: eager is what runs
    run = mlflow.get_run(result.run_id)
    assert run.data.tags["paraling.training.capture"] == "eager"
    assert "training step (trainer.capture, as run): eager" in run.data.tags["mlflow.note.content"]


def test_several_methods_log_each_and_windows_map_to_utterances(cfg: DictConfig, tmp_path: Path) -> None:
    runner = Oracle(methods=("weighted", "majority"), windows=True)
    result = run_cv(cfg, runner, runner.prepare())
    run = mlflow.get_run(result.run_id)
    assert run.data.metrics["uar_weighted"] == run.data.metrics["uar_majority"] == pytest.approx(0.5)
    assert "UAR by aggregation: weighted 0.500, majority 0.500" in run.data.tags["mlflow.note.content"]
    w = result.oof.windows
    assert len(w["window_proba"]) == 16 and sorted(set(w["window_utt"].tolist())) == list(range(8))
    files = mlflow.artifacts.download_artifacts(run_id=result.run_id, artifact_path="oof", dst_path=str(tmp_path))
    with np.load(Path(files) / "all_aggregations.npz") as z:
        assert set(z.files) == {"utt_ids", "weighted", "majority"}


def test_resume_file_reopens_an_unfinished_run(cfg: DictConfig, tmp_path: Path) -> None:
    """A run killed mid-way (still RUNNING, its id in the checkpoint folder) is finished by the resumed run."""
    runner = Oracle()
    exp = mlflow.set_experiment(cfg.tracking.experiment)
    killed = mlflow.MlflowClient().create_run(exp.experiment_id).info.run_id
    (tmp_path / "run_id").write_text(killed)
    result = run_cv(cfg, runner, runner.prepare(), run_id_file=tmp_path / "run_id")
    run = mlflow.get_run(killed)
    assert result.run_id == killed and run.info.status == "FINISHED" and run.data.tags["paraling.resumed"] == "true"
    fresh = run_cv(cfg, runner, runner.prepare(), run_id_file=tmp_path / "new" / "run_id")
    assert fresh.run_id != killed and (tmp_path / "new" / "run_id").read_text() == fresh.run_id


class SlowOracle(Oracle):
    """The oracle, a second per fold: long enough for two system-metric samples at a 0.5 s interval."""

    def fit_fold(self, plan: FoldPlan, log_epoch: Callable[[int, dict[str, float]], None]) -> FoldOutput:
        import time

        time.sleep(1.0)
        return super().fit_fold(plan, log_epoch)


@pytest.mark.parametrize("on", [True, False])
def test_system_metrics_follow_the_switch(compose_cfg: Callable[..., DictConfig], mlflow_uri: str, on: bool) -> None:
    cfg = compose_cfg(
        ["corpus.negative_class=null", f"tracking.system_metrics={on}", "tracking.system_metrics_interval=0.5"]
    )
    runner = SlowOracle()
    result = run_cv(cfg, runner, runner.prepare())
    metrics = mlflow.get_run(result.run_id).data.metrics
    system = {k for k in metrics if k.startswith("system/")}
    assert bool(system) == on, sorted(metrics)
    if on:
        assert {"system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"} <= system
