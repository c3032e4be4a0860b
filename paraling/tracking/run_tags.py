"""The tags every paraling run carries: library versions and platform, MLflow's source tags, the owning process;
and the experiment kind that makes MLflow 3 open paraling's experiments on the training-runs view."""

from __future__ import annotations

import os
import platform
import socket
import sys

__all__ = ["EXPERIMENT_KIND_TAG", "TRAINING_KIND", "alive", "environment_tags", "owner_tags", "source_tags"]


def environment_tags() -> dict[str, str]:
    """Library versions and platform, logged with every run (determinism, issue reports)."""
    import mlflow
    import numpy
    import sklearn
    import torch

    tags = {
        "paraling.python": platform.python_version(),
        "paraling.platform": platform.platform(),
        "paraling.torch": torch.__version__,
        "paraling.numpy": numpy.__version__,
        "paraling.sklearn": sklearn.__version__,
        "paraling.mlflow": mlflow.__version__,
    }
    try:
        import torchaudio

        tags["paraling.torchaudio"] = torchaudio.__version__
    except ImportError:  # pragma: no cover - torchaudio is a dependency
        pass
    from paraling import __version__

    tags["paraling.version"] = __version__
    return {**tags, **source_tags()}


def source_tags() -> dict[str, str]:
    """MLflow's source tags (the runs table's Source column): the command, and the git commit of the working
    folder when it is inside a git checkout (the folder holding the user's configs and study files)."""
    import shutil
    import subprocess

    from mlflow.utils.mlflow_tags import MLFLOW_GIT_COMMIT, MLFLOW_SOURCE_NAME, MLFLOW_SOURCE_TYPE

    command = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "paraling"
    sub = sys.argv[1] if len(sys.argv) > 1 and not sys.argv[1].startswith("-") else ""
    tags = {MLFLOW_SOURCE_TYPE: "LOCAL", MLFLOW_SOURCE_NAME: f"{command} {sub}".strip()}
    git = shutil.which("git")
    if git:
        try:
            out = subprocess.run([git, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False)
            if out.returncode == 0 and len(out.stdout.strip()) == 40:
                tags[MLFLOW_GIT_COMMIT] = out.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    return tags


def owner_tags() -> dict[str, str]:
    """Which process owns a RUNNING run (host, pid and the pid's start time, to survive pid reuse)."""
    import psutil

    return {
        "paraling.host": socket.gethostname(),
        "paraling.pid": str(os.getpid()),
        "paraling.pid_start": f"{psutil.Process().create_time():.3f}",
    }


def alive(pid: str | None, start: str | None) -> bool:
    """Whether process ``pid`` exists and started at ``start`` (seconds since epoch)."""
    import psutil

    if not pid or not pid.isdigit():
        return True  # not ours to judge
    try:
        proc = psutil.Process(int(pid))
        return start is None or abs(proc.create_time() - float(start)) < 1.0
    except (psutil.NoSuchProcess, ValueError):
        return False


#: MLflow 3 opens an experiment in the view its kind names; without it, the GenAI view (traces, token usage).
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
TRAINING_KIND = "custom_model_development"
