"""The UI links the summaries print: the run's page when the store has the run, a plain pointer when not."""

from __future__ import annotations

from pathlib import Path

from paraling.tracking.ui import open_line, run_link


def test_run_link_and_open_line_name_the_run_page(tmp_path: Path) -> None:
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    exp = client.create_experiment("links", artifact_location=(tmp_path / "art").as_uri())
    run = client.create_run(exp)
    client.set_terminated(run.info.run_id)
    page = f"http://127.0.0.1:5000/#/experiments/{exp}/runs/{run.info.run_id}?workflowType=machine_learning"
    assert run_link(uri, run.info.run_id) == page
    assert (
        open_line(uri, run_link(uri, run.info.run_id))
        == f"open it:    mlflow ui --backend-store-uri {uri}   then {page}"
    )


def test_unknown_run_gives_no_link(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert run_link(uri, "0" * 32) == ""
    assert open_line(uri, run_link(uri, "0" * 32)).endswith("then the MLflow UI")
