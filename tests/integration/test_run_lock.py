"""Two ``paraling train`` of one configuration: the second stops with one line while the first is alive."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from paraling.errors import TrainingError
from paraling.training.runlock import hold_run_lock


def _args(csv: Path, cache: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "paraling.cli.main",
        "train",
        "corpus=csv",
        f"corpus.path={csv}",
        f"cache_dir={cache}",
        "trainer.epochs=60",
        "cv.folds=2",
        "model.channels=[8,8,8]",
        "model.fc_sizes=[16]",
        "progress=never",
    ]


@pytest.mark.slow
def test_second_train_of_the_same_config_stops_while_the_first_is_alive(
    tone_corpus: Path, tmp_path: Path, mlflow_uri: str
) -> None:
    cache = tmp_path / "cache"
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_uri}
    first = subprocess.Popen(
        _args(tone_corpus, cache), cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.time() + 240
        while not list(cache.glob("checkpoints/*/fold0.pt")):
            assert first.poll() is None and time.time() < deadline, "the first run did not start training"
            time.sleep(0.2)
        second = subprocess.run(
            _args(tone_corpus, cache), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
        )
        assert second.returncode == 2, second.stderr[-2000:]
        assert f"another paraling process (pid {first.pid} on" in second.stderr
        assert "Traceback" not in second.stderr
        (folder,) = [p.parent for p in cache.glob("checkpoints/*/run_id")]
        with pytest.raises(TrainingError, match=f"pid {first.pid}"), hold_run_lock(folder):
            pass
    finally:
        first.kill()
        first.wait()
    with hold_run_lock(folder):  # the kernel released the killed owner's lock: the next run may resume
        pass
    client = MlflowClient(mlflow_uri)
    runs = client.search_runs([client.get_experiment_by_name("paraling").experiment_id])
    assert len(runs) == 1  # the second process opened no run of its own and did not log into the first's
