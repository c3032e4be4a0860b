"""Where to look in the MLflow UI: the command that serves a local store and the links paraling prints.

MLflow 3.17's UI opens every experiment in its *GenAI* view (traces, token usage) unless the page's
``workflowType`` says otherwise: the choice is the browser's (the "GenAI | Model training" switch, remembered in
the browser), and the experiment tag ``mlflow.experimentKind`` that paraling sets only decides where the switch is
not shown. The links here carry ``workflowType=machine_learning``, so they open on the training-runs table and
the run pages whatever a browser remembered.

Example:
    >>> experiment_url("sqlite:///mlruns/mlflow.db", "3")
    'http://127.0.0.1:5000/#/experiments/3/runs?workflowType=machine_learning'
    >>> ui_command("sqlite:///mlruns/mlflow.db")
    'mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db'
"""

from __future__ import annotations

__all__ = ["LOCAL_UI", "WORKFLOW", "experiment_url", "open_line", "run_link", "run_url", "ui_base", "ui_command"]

LOCAL_UI = "http://127.0.0.1:5000"
"""Where ``mlflow ui`` serves by default."""

WORKFLOW = "workflowType=machine_learning"
"""The query that opens MLflow's model-training view instead of the GenAI one."""


def _served(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


def ui_base(uri: str) -> str:
    """The UI's address: the tracking server itself, or ``mlflow ui`` on this machine for a local store."""
    return uri.rstrip("/") if _served(uri) else LOCAL_UI


def ui_command(uri: str) -> str:
    """The command that serves a local store (empty for a tracking server, which serves its own UI)."""
    return "" if _served(uri) else f"mlflow ui --backend-store-uri {uri}"


def experiment_url(uri: str, experiment_id: str) -> str:
    """The experiment's training-runs table."""
    return f"{ui_base(uri)}/#/experiments/{experiment_id}/runs?{WORKFLOW}"


def run_url(uri: str, experiment_id: str, run_id: str, tab: str = "") -> str:
    """A run's page (``tab``: ``model-metrics`` for its charts, ``artifacts``, ...; empty: its overview)."""
    return f"{ui_base(uri)}/#/experiments/{experiment_id}/runs/{run_id}{'/' + tab if tab else ''}?{WORKFLOW}"


def run_link(uri: str, run_id: str, tab: str = "") -> str:
    """A run's page, its experiment looked up in the store; empty when the store cannot be read.

    The summaries that print it never fail a finished run or sweep over a link: the run id they print with it is
    enough to find the run.
    """
    try:
        from paraling.tracking.store import mlflow_client

        experiment_id = str(mlflow_client(uri).get_run(run_id).info.experiment_id)
    except Exception:  # any store error only drops the link
        return ""
    return run_url(uri, experiment_id, run_id, tab)


def open_line(uri: str, link: str) -> str:
    """``open it: <command that serves the store>   then <link>`` for a summary (``link``: from :func:`run_link`)."""
    serve = ui_command(uri)
    return f"open it:    {serve + '   then ' if serve else ''}{link or 'the MLflow UI'}"
