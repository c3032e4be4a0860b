"""RunTracker: folder uploads keep their layout and go through MLflow's atomic single-file path."""

from __future__ import annotations

from pathlib import Path

import pytest

from paraling.tracking.tracker import RunTracker


def test_log_artifact_uploads_a_folder_file_by_file(tmp_path: Path, mlflow_uri: str, monkeypatch) -> None:
    src = tmp_path / "out"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("a")
    (src / "sub" / "b.txt").write_text("b")
    tracker = RunTracker("unit", mlflow_uri)
    monkeypatch.setattr(tracker.client, "log_artifacts", None)  # the in-place folder copy must not be used
    tracker.log_artifact(src, "oof")
    tracker.log_artifact(src)
    tracker.end()
    root = tmp_path / "dl"
    root.mkdir()
    tracker.client.download_artifacts(tracker.run_id, "", str(root))
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    assert files == ["a.txt", "oof/a.txt", "oof/sub/b.txt", "sub/b.txt"]
    assert (root / "oof" / "sub" / "b.txt").read_text() == "b"


def test_experiments_open_on_the_training_runs_view(mlflow_uri: str) -> None:
    """MLflow 3 shows an experiment without `mlflow.experimentKind` in its GenAI view: paraling marks its own as
    training runs, and leaves a kind the user set alone."""
    from mlflow.tracking import MlflowClient

    from paraling.tracking.tracker import EXPERIMENT_KIND_TAG, TRAINING_KIND

    client = MlflowClient(mlflow_uri)
    RunTracker("fresh", mlflow_uri).end()
    assert client.get_experiment_by_name("fresh").tags[EXPERIMENT_KIND_TAG] == TRAINING_KIND
    mine = client.create_experiment("mine", tags={EXPERIMENT_KIND_TAG: "genai_development"})
    RunTracker("mine", mlflow_uri).end()
    assert client.get_experiment(mine).tags[EXPERIMENT_KIND_TAG] == "genai_development"
    old = client.create_experiment("old")  # written before paraling set the kind
    RunTracker("old", mlflow_uri).end()
    assert client.get_experiment(old).tags[EXPERIMENT_KIND_TAG] == TRAINING_KIND


def test_runs_carry_mlflows_source_tags_and_the_git_commit(
    mlflow_uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The runs table's Source column: the command, and the commit of the git checkout the run started in."""
    import subprocess

    from mlflow.tracking import MlflowClient

    repo = tmp_path / "project"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / "a.txt").write_text("x")
    git = ["git", "-C", str(repo), "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run([*git, "add", "a.txt"], check=True)
    subprocess.run([*git, "commit", "-qm", "one"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    monkeypatch.chdir(repo)
    monkeypatch.setattr("sys.argv", ["paraling", "train", "seed=1"])
    t = RunTracker("src", mlflow_uri)
    t.end()
    tags = MlflowClient(mlflow_uri).get_run(t.run_id).data.tags
    assert tags["mlflow.source.type"] == "LOCAL" and tags["mlflow.source.name"] == "paraling train"
    assert tags["mlflow.source.git.commit"] == head
    monkeypatch.chdir(tmp_path)  # not a checkout: no commit tag
    t = RunTracker("src", mlflow_uri)
    t.end()
    assert "mlflow.source.git.commit" not in MlflowClient(mlflow_uri).get_run(t.run_id).data.tags


def test_a_dataset_collision_is_retried_and_never_fails_the_run(
    mlflow_uri: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Two runs recording the same new dataset at once collide on MLflow's unique key (seen with parallel sweep
    jobs on SQLite): the loser retries and links the existing row; a store that keeps refusing costs a warning."""
    from mlflow.tracking import MlflowClient

    t = RunTracker("ds", mlflow_uri)
    real, calls = t.client.log_inputs, []

    def collide_once(run_id: str, datasets: list) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("UNIQUE constraint failed: datasets.experiment_id, datasets.name, datasets.digest")
        real(run_id, datasets=datasets)

    monkeypatch.setattr(t.client, "log_inputs", collide_once)
    t.log_dataset("demo", "d" * 40, "data/demo", {"utterances": 3})
    (ds,) = MlflowClient(mlflow_uri).get_run(t.run_id).inputs.dataset_inputs
    assert len(calls) == 2 and ds.dataset.name == "demo" and ds.dataset.digest == "d" * 36

    def refuse(run_id: str, datasets: list) -> None:
        raise RuntimeError("database is locked")

    monkeypatch.setattr(t.client, "log_inputs", refuse)
    t.log_dataset("other", "e" * 40, "data/other", {})
    assert "could not record dataset other" in caplog.text
    t.end()
