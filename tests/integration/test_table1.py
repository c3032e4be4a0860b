"""Table 1 as one command: `paraling train -m experiment=net0..net5` then `paraling report`, at reduced size.

The source task is a tiny language-ID corpus made by the real recipe; net4 pre-trains on it (no manual step) and
net5 reuses that run. Every row of the printed table must be filled.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

pytestmark = pytest.mark.slow


def _paraling(args: list[str], cwd: Path, uri: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}
    proc = subprocess.run(
        [sys.executable, "-m", "paraling.cli.main", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def test_table1_multirun_and_report(tone_corpus: Path, tmp_path: Path, mlflow_uri: str) -> None:
    from paraling.data.recipes.langid import prepare_langid

    langid = prepare_langid(tmp_path / "langid", n_speakers=4, utts_per_language=2)
    pre = f'transfer.pretrain_overrides=["experiment=pretrain_langid","corpus.path={langid}"]'
    common = [
        "corpus=csv",
        f"corpus.path={tone_corpus}",
        "cv.folds=2",
        "trainer.epochs=1",
        "progress=never",
        "device=cpu",
        "trainer.checkpoint=false",
        f"cache_dir={tmp_path / 'cache'}",
        pre,
    ]
    # one multirun per model kind: each model's node holds only its own keys (as scripts/table1.sh does it)
    dnn = ["experiment=net0", "model.baseline.dnn_epochs=10", f"hydra.sweep.dir={tmp_path / 'multirun-dnn'}"]
    _paraling(["train", "-m", *dnn, *common], tmp_path, mlflow_uri)
    cnn = ["experiment=net1,net2,net3,net4,net5", "model.channels=[8,8,8]", "model.fc_sizes=[32]"]
    _paraling(["train", "-m", *cnn, f"hydra.sweep.dir={tmp_path / 'multirun'}", *common], tmp_path, mlflow_uri)
    proc = _paraling(
        ["report", "--experiment", "table1", "--negative-class", "noise", "--out", str(tmp_path / "report")],
        tmp_path,
        mlflow_uri,
    )
    print(proc.stdout)
    first, rest = proc.stdout.split("\n## Paired tests", 1)  # the table, then the tests and the learning curves
    table = [line for line in first.splitlines() if line.startswith("| ")][1:]
    assert "| net3 | net2 | 2 |" in rest and "| net5 | net4 | 2 |" in rest  # 2 folds x 1 seed each
    assert "## Learning curves" in rest and (tmp_path / "report" / "curves.png").stat().st_size > 1000
    names = [line.split("|")[1].strip() for line in table]
    assert names == ["net0", "net1", "net2", "net3", "net4", "net5", "ensemble"]
    for line in table:
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert all(cells) and "n/a" not in cells, line
    with open(tmp_path / "report" / "table.csv") as fh:
        assert len(list(csv.DictReader(fh))) == 7
    assert (tmp_path / "report" / "uar.png").stat().st_size > 1000

    client = MlflowClient(mlflow_uri)
    pretrain = client.search_runs([client.get_experiment_by_name("pretrain").experiment_id])
    assert len(pretrain) == 1 and pretrain[0].info.status == "FINISHED"  # net4 trained it, net5 reused it
    runs = client.search_runs([client.get_experiment_by_name("table1").experiment_id])
    by_name = {r.data.tags["paraling.name"]: r for r in runs}
    for n in ("net4", "net5"):
        assert by_name[n].data.tags["paraling.transfer.source_run_id"] == pretrain[0].info.run_id
    assert by_name["net0"].data.tags["paraling.model_type"] == "dnn"
    assert len({r.data.tags["paraling.fold_digest"] for r in runs}) == 1  # the same speaker folds everywhere
