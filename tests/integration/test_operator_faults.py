"""What an unlucky operator hits gets one ``paraling: error: ... Fix: ...`` line, no traceback, nothing half-written.

A tracking server killed mid-run, an unreachable PostgreSQL storage, processes creating one fresh SQLite MLflow
store at once, and a disk that fills up while a checkpoint is written.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import yaml
from mlflow.tracking import MlflowClient

from paraling.errors import ResourceError


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env.update(MLFLOW_HTTP_REQUEST_MAX_RETRIES="1", MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR="0")
    return env


def _one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> str:
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    (line,) = [x for x in proc.stderr.splitlines() if x.startswith("paraling: error:")]
    for n in ("Fix:", *needles):
        assert n in line, line
    return line


@pytest.mark.service
@pytest.mark.slow
def test_tracking_server_killed_mid_run_keeps_the_training(
    tone_corpus: Path, tmp_path: Path, mlflow_servers, tiny_overrides: Callable[..., list[str]]
) -> None:
    url, server = mlflow_servers.start(tmp_path)
    cache = tmp_path / "cache"
    args = [sys.executable, "-m", "paraling.cli.main", "train", *tiny_overrides(tone_corpus, cache, epochs=8)]
    run = subprocess.Popen(
        [*args, f"tracking.uri={url}"],
        cwd=tmp_path,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 240
    while not list(cache.glob("checkpoints/*/fold0.pt")):
        assert run.poll() is None and time.time() < deadline, run.communicate()[1][-3000:]
        time.sleep(0.1)
    mlflow_servers.stop(server)
    out, err = run.communicate(timeout=600)
    line = _one_line_error(
        subprocess.CompletedProcess(args, run.returncode, out, err), "MLflow tracking store", "re-run the same command"
    )
    assert "trainer.checkpoint" in line
    assert list(cache.glob("checkpoints/*/fold0.pt"))  # the training so far is kept
    url2, _ = mlflow_servers.start(tmp_path)  # the same store, back on another port
    again = subprocess.run(
        [*args, f"tracking.uri={url2}"], cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=600
    )
    assert again.returncode == 0, again.stderr[-3000:]
    client = MlflowClient(url2)
    (r,) = client.search_runs([client.get_experiment_by_name("paraling").experiment_id])
    assert r.info.status == "FINISHED" and r.data.tags.get("paraling.resumed") == "true"


def test_unreachable_postgresql_storage_is_one_line(
    tone_corpus: Path,
    tmp_path: Path,
    mlflow_uri: str,
    tiny_overrides: Callable[..., list[str]],
    free_port: Callable[[], int],
) -> None:
    study = tmp_path / "s.yaml"
    study.write_text(yaml.safe_dump({"study_name": "s", "space": {"windows.width": [11, 13]}, "n_trials": 1}))
    storage = f"postgresql://u:hunter2@127.0.0.1:{free_port()}/db"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "paraling.cli.main",
            "sweep",
            str(study),
            "--storage",
            storage,
            *tiny_overrides(tone_corpus, tmp_path / "cache"),
        ],
        cwd=tmp_path,
        env={**_env(), "MLFLOW_TRACKING_URI": mlflow_uri},
        capture_output=True,
        text=True,
        timeout=300,
    )
    line = _one_line_error(proc, "cannot open the Optuna storage postgresql://u:***@127.0.0.1")
    assert "hunter2" not in proc.stderr + proc.stdout and line


def test_processes_creating_one_fresh_sqlite_store_at_once(tmp_path: Path) -> None:
    code = textwrap.dedent(
        """
        import sys
        from paraling.tracking.tracker import RunTracker
        t = RunTracker("race", sys.argv[1], "r")
        with t.running():
            t.log_metrics({"x": 1.0})
        """
    )
    for round_ in range(2):
        uri = f"sqlite:///{tmp_path / f'r{round_}' / 'mlflow.db'}"
        procs = [
            subprocess.Popen([sys.executable, "-c", code, uri], stderr=subprocess.PIPE, text=True) for _ in range(4)
        ]
        errs = [p.communicate(timeout=300)[1] for p in procs]
        assert [p.returncode for p in procs] == [0] * 4, "\n".join(e[-1500:] for e in errs)
        client = MlflowClient(uri)
        runs = client.search_runs([client.get_experiment_by_name("race").experiment_id])
        assert len(runs) == 4 and {r.info.status for r in runs} == {"FINISHED"}


def test_disk_full_while_writing_a_checkpoint(
    tiny_cfg, mlflow_uri: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from paraling.pipeline.experiment import run_experiment

    def full_disk(obj, f, *a, **k):  # what torch raises when the write comes up short
        Path(f).write_bytes(b"PK\x03\x04 half")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0")

    monkeypatch.setattr(torch, "save", full_disk)
    cfg = tiny_cfg("trainer.epochs=2", "trainer.checkpoint=true")
    with pytest.raises(ResourceError, match=r"cannot write the checkpoint .*fold0\.pt .*Fix: free space"):
        run_experiment(cfg)
    ckpts = list(Path(cfg.cache_dir, "checkpoints").rglob("*"))
    assert not [p for p in ckpts if p.suffix in (".pt", ".tmp") or ".pt." in p.name], ckpts  # nothing half-written
    client = MlflowClient(mlflow_uri)
    (r,) = client.search_runs([client.get_experiment_by_name("paraling").experiment_id])
    assert r.info.status == "FAILED" and "ResourceError" in r.data.tags["paraling.error"]
