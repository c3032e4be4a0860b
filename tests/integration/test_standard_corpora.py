"""``paraling train corpus=<each standard corpus> corpus.path=<tiny tree>`` with the literature's protocol: the run
scores every utterance the protocol scores, names the protocol, and logs WA and macro-F1 beside UAR; `paraling data`
prepares and lists them; `paraling report` tests by any of the metrics."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from paraling.pipeline.experiment import run_experiment

Tree = Callable[[str], Path]
TINY = ["trainer.epochs=1", "model.channels=[4,4,4]", "model.fc_sizes=[16]", "progress=never", "device=cpu"]
PROTOCOLS = {
    "emodb": ("leave-one-speaker-out", 4, 28),
    "ravdess": ("5-fold cross-validation grouped by speaker", 5, 48),
    "cremad": ("5-fold cross-validation grouped by speaker", 5, 36),
    "iemocap": ("leave-one-session-out", 3, 60),
    "compare": ("fixed split: train on the rest, score split=devel", 1, 6),
}


@pytest.mark.parametrize("name", list(PROTOCOLS))
def test_a_tiny_run_on_each_corpus_follows_its_protocol(
    name: str, standard_tree: Tree, tmp_path: Path, mlflow_uri: str, compose_cfg
) -> None:
    protocol, n_folds, n_scored = PROTOCOLS[name]
    overrides = [f"corpus={name}", f"corpus.path={standard_tree(name)}", f"corpus.manifest_dir={tmp_path / 'm'}"]
    result = run_experiment(compose_cfg([*overrides, f"cache_dir={tmp_path / 'cache'}", *TINY]))
    assert len(result.fold_uars) == n_folds and int((result.oof.fold >= 0).sum()) == n_scored
    run = MlflowClient(mlflow_uri).get_run(result.run_id)
    assert (
        run.data.tags["paraling.protocol"] == protocol
        and f"protocol: {protocol}" in run.data.tags["mlflow.note.content"]
    )
    for key in ("uar", "wa", "macro_f1"):
        assert 0.0 <= run.data.metrics[key] <= 1.0
    assert np.isclose(run.data.metrics["wa"], run.data.metrics["accuracy"])


def test_paraling_data_prepares_and_lists(standard_tree: Tree, tmp_path: Path) -> None:
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "PARALING_TEST": "1"}
        cmd = [sys.executable, "-m", "paraling.cli.main", "data", *args]
        return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)

    listed = cli("list")
    assert listed.returncode == 0
    for name in PROTOCOLS:
        assert f"| {name} |" in listed.stdout
    assert "leave-one-session-out" in listed.stdout and "CC BY-NC-SA 4.0" in listed.stdout
    done = cli("iemocap", "--root", str(standard_tree("iemocap")), "--out", str(tmp_path / "iemocap"))
    assert done.returncode == 0 and done.stdout.strip().endswith("manifest.jsonl")
    lines = (tmp_path / "iemocap" / "manifest.jsonl").read_text().splitlines()
    assert len(lines) == 60 and json.loads(lines[0])["extra"]["session"] == "Ses01"
    missing = cli("emodb", "--root", str(tmp_path / "nowhere"), "--out", str(tmp_path / "e"))
    assert missing.returncode != 0 and "corpus folder not found" in missing.stderr
    assert "Traceback" not in missing.stderr and len(missing.stderr.strip().splitlines()) == 1


def test_report_tests_and_sorts_by_any_metric(
    standard_tree: Tree, tmp_path: Path, mlflow_uri: str, compose_cfg
) -> None:
    import csv

    from paraling.cli.report import main as report_main

    base = ["corpus=emodb", f"corpus.path={standard_tree('emodb')}", f"corpus.manifest_dir={tmp_path / 'm'}"]
    base += [f"cache_dir={tmp_path / 'cache'}", "tracking.experiment=corpora", "progress=never", "device=cpu"]
    run_experiment(compose_cfg([*base, "name=cnn", *TINY]))
    run_experiment(compose_cfg([*base, "name=svm", "model=svm", "model.baseline.features=frames"]))
    out = tmp_path / "report"
    args = ["--experiment", "corpora", "--spec", "none", "--metric", "macro_f1", "--sort", "--out", str(out)]
    assert report_main(args) == 0
    assert "| WA | macro-F1 |" in (out / "table.md").read_text()
    with open(out / "table.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    f1 = [float(r["macro_f1"]) for r in rows]
    assert len(rows) == 2 and f1 == sorted(f1, reverse=True) and all(0 <= float(r["wa"]) <= 1 for r in rows)
    compared = subprocess.run(
        [sys.executable, "-m", "paraling.cli.main", "report", "--experiment", "corpora", "--compare", "cnn", "svm",
         "--metric", "wa"],
        capture_output=True, text=True, env={**os.environ, "MLFLOW_TRACKING_URI": mlflow_uri}, timeout=300,
    )  # fmt: skip
    assert compared.returncode == 0 and "mean a - b (WA points)" in compared.stdout


def test_a_challenge_run_predicts_the_withheld_test_set(standard_tree: Tree, tmp_path: Path, mlflow_uri: str) -> None:
    tree = standard_tree("compare")
    args = ["train", "corpus=compare", f"corpus.path={tree}", f"corpus.manifest_dir={tmp_path / 'm'}"]
    args += [f"cache_dir={tmp_path / 'cache'}", *TINY, f"hydra.run.dir={tmp_path / 'h'}"]
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_uri}
    cmd = [sys.executable, "-m", "paraling.cli.main", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "test predictions: predictions/test.csv" in proc.stdout
    client = MlflowClient(mlflow_uri)
    (run,) = client.search_runs([client.get_experiment_by_name("paraling").experiment_id])
    table = Path(client.download_artifacts(run.info.run_id, "predictions/test.csv", str(tmp_path)))
    rows = table.read_text().splitlines()
    assert len(rows) == 7 and all("/wav/test_" in r for r in rows[1:])  # header + the 6 unlabelled test files
    assert {r.split(",")[1] for r in rows[1:]} <= {"low", "high", "mid"}
