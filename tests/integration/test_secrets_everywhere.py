"""A password planted in the tracking URI reaches no output: stdout, stderr, Hydra's files, logs, the MLflow store,
the Optuna journal, error messages."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

SECRET = "S3cretPW"
OTHER = "Pa55word"


def _paraling(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "1"  # the unreachable server below fails fast
    return subprocess.run(
        [sys.executable, "-m", "paraling.cli.main", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def _files_with(folder: Path, needle: str) -> list[str]:
    hits = []
    for p in folder.rglob("*"):
        if p.is_file() and p.name != "mlflow-server.log" and needle.encode() in p.read_bytes():
            hits.append(str(p.relative_to(folder)))
    return hits


@pytest.mark.service
def test_a_planted_password_reaches_no_output(
    tone_corpus: Path, tmp_path: Path, mlflow_server: str, tiny_overrides: Callable[..., list[str]]
) -> None:
    uri = mlflow_server.replace("http://", f"http://alice:{SECRET}@")
    work = tmp_path / "work"
    work.mkdir()
    tiny = tiny_overrides(tone_corpus, tmp_path / "cache")
    train = _paraling("train", *tiny, f"tracking.uri={uri}", cwd=work)
    assert train.returncode == 0, train.stderr[-3000:]
    assert "alice:***@" in train.stdout  # the printed `mlflow ui` line, masked
    study = work / "s.yaml"
    study.write_text(
        yaml.safe_dump({"study_name": "s", "space": {"windows.width": [11, 13]}, "pruner": "none", "n_trials": 2})
    )
    sweep = _paraling("sweep", str(study), *tiny, f"tracking.uri={uri}", cwd=work)
    assert sweep.returncode == 0, sweep.stderr[-3000:]
    down = _paraling("train", *tiny, f"tracking.uri=http://bob:{OTHER}@127.0.0.1:9", cwd=work)
    assert down.returncode == 2 and "paraling: error:" in down.stderr and "bob:***@" in down.stderr
    for proc in (train, sweep, down):
        for needle in (SECRET, OTHER):
            assert needle not in proc.stdout and needle not in proc.stderr
    for needle in (SECRET, OTHER):  # Hydra's outputs, logs, the journal, the server's database and artifacts
        assert not _files_with(tmp_path, needle), _files_with(tmp_path, needle)
    assert list(tmp_path.rglob("server.db")) and list(work.rglob(".hydra/overrides.yaml"))
