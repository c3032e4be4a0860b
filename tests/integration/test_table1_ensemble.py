"""The Table 1 ensemble row as a logged MLflow run: `paraling ensemble --names ...`, then `paraling report` uses it.

The member runs are fabricated by conftest's ``oof_run``/``fake_oof`` (out-of-fold scores only, no training).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from dataclasses import astuple
from pathlib import Path

import numpy as np
import pytest

from paraling.cli.main import main
from paraling.ensemble import combine, stack_oof
from paraling.report.spec import load_report_spec
from paraling.report.table import build_table
from paraling.scoring.metrics import uar
from paraling.scoring.oof import OOFScores, load_oof
from paraling.tracking.runs import make_client

MEMBERS = ["net0", "net2", "net3", "net5"]
ENSEMBLE = ["ensemble", "--experiment", "table1", "--method", "all", "--combiner", "harmonic", "--name", "ensemble"]


def table1(**over: object) -> dict[str, object]:
    """The keyword arguments of ``conf/report/table1.yaml`` (what ``paraling report`` uses), with ``over`` on top."""
    return {**load_report_spec("table1").as_kwargs(), **over}


def _cli_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run the CLI, expect exit code 2, return its one `paraling...: error:` line (argparse's or paraling's)."""
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    lines = [
        line for line in capsys.readouterr().err.splitlines() if line.startswith("paraling") and ": error: " in line
    ]
    assert len(lines) == 1, lines
    return lines[0]


def test_names_log_the_table1_ensemble_and_the_report_uses_it(
    oof_run: Callable[..., str],
    fake_oof: Callable[..., OOFScores],
    mlflow_uri: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    scores = {f"net{i}": fake_oof(i, noise=0.85) for i in range(6)}  # noisy: the ensemble is not perfect
    oof_run("net2", fake_oof(99))  # an older net2: the newest finished one counts
    ids = {name: oof_run(name, oof) for name, oof in scores.items()}
    oof_run("net3", fake_oof(98), status="FAILED")  # a newer but failed net3: ignored
    adhoc = build_table("table1", **table1())[-1]
    assert adhoc.name == "ensemble" and adhoc.run_id == "" and 0.5 < adhoc.uar < 0.9

    # a name without a finished run: one line naming it, the experiment and the fix; nothing is logged
    err = _cli_error([*ENSEMBLE, "--names", "net0", "net7", "net8"], capsys)
    assert "net7, net8" in err and "'table1'" in err and "Fix: train them first" in err and "--names" in err
    # --names picks the runs by itself
    assert "not allowed with argument --names" in _cli_error(
        [*ENSEMBLE, "--names", "net0", "--runs", ids["net0"]], capsys
    )
    # fabricated runs cannot predict from audio: registering exactly these names is refused, not silently shrunk
    err = _cli_error([*ENSEMBLE, "--names", *MEMBERS, "--register", "eating"], capsys)
    assert "cannot register" in err and "net0" in err and "drop --register" in err
    client = make_client(mlflow_uri)
    exp = client.get_experiment_by_name("table1").experiment_id
    assert not client.search_runs([exp], "tags.`paraling.kind` = 'ensemble'")

    assert main([*ENSEMBLE, "--names", *MEMBERS]) == 0
    (run,) = client.search_runs([exp], "tags.`paraling.kind` = 'ensemble'")
    rid = run.info.run_id
    assert run.info.status == "FINISHED" and run.data.tags["paraling.name"] == "ensemble"
    assert run.data.tags["paraling.members"].split(",") == [ids[m] for m in MEMBERS]
    assert json.loads(run.data.params["members"]) == [ids[m] for m in MEMBERS]
    assert json.loads(run.data.params["weights"]) == [1, 1, 1, 1] and run.data.params["combiner"] == "harmonic"
    S, y, _ = stack_oof([scores[m] for m in MEMBERS], MEMBERS)
    want = combine(S, method="harmonic")
    assert run.data.metrics["uar"] == pytest.approx(uar(y, want.argmax(1), 3))
    assert run.data.metrics["uar_selection"] == pytest.approx(uar(y, want.argmax(1), 3))
    with tempfile.TemporaryDirectory() as tmp:
        logged = load_oof(client.download_artifacts(rid, "oof/scores.npz", tmp))
    np.testing.assert_allclose(logged.proba, want, atol=1e-6)

    row = build_table("table1", **table1())[-1]
    assert row.run_id == rid and rid[:8] in row.description
    assert astuple(row)[5:] == pytest.approx(astuple(adhoc)[5:])  # same UARs as the ad-hoc combination
    assert main(["report", "--experiment", "table1", "--out", str(tmp_path / "report")]) == 0
    assert f"harmonic mean), MLflow run {rid[:8]} |" in capsys.readouterr().out
    assert build_table("table1", **table1(combiner="mean"))[-1].run_id == ""  # another combiner: combined ad hoc

    oof_run("net5", fake_oof(5))  # a newer net5: the logged ensemble no longer has the newest members
    assert build_table("table1", **table1())[-1].run_id == ""
