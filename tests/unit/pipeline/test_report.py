"""``paraling report``: scoring from out-of-fold files, run selection in MLflow, the ensemble row, the outputs."""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from paraling.cli.main import main
from paraling.ensemble import combine
from paraling.pipeline.report import build_table, render_markdown, score_row, write_report
from paraling.scoring.metrics import binary_uar, uar
from paraling.scoring.oof import OOFScores

Fake = Callable[..., OOFScores]


def test_score_row_uses_folds_and_the_negative_class(fake_oof: Fake) -> None:
    oof = fake_oof(0)
    row = score_row("x", oof, "No_Food", "desc", "cnn", "rid")
    pred = oof.proba.argmax(1)
    assert row.uar == pytest.approx(uar(oof.y, pred, 3))
    per = [uar(oof.y[oof.fold == k], pred[oof.fold == k], 3) for k in (0, 1)]
    assert row.uar_mean == pytest.approx(np.mean(per)) and row.uar_std == pytest.approx(np.std(per))
    assert row.uar2 == pytest.approx(binary_uar(oof.y, pred, 2))
    assert np.isnan(score_row("x", oof, "Silence").uar2)
    oof.fold[:10] = -1  # never scored: ignored
    assert score_row("x", oof).uar == pytest.approx(uar(oof.y[10:], pred[10:], 3))


def test_markdown_csv_and_chart(tmp_path: Path, fake_oof: Fake) -> None:
    rows = [
        score_row("net0", fake_oof(0), "No_Food", "baseline", "dnn"),
        score_row("net1", fake_oof(1), None, "cnn", "cnn"),
    ]
    md = render_markdown(rows)
    assert md.count("\n") == 4 and "| net0 | baseline | dnn |" in md and "n/a" in md.splitlines()[3]
    assert " ± " in md and "UAR 3-class" in md
    paths = write_report(rows, tmp_path / "rep", "title")
    assert paths["png"].stat().st_size > 1000 and paths["markdown"].read_text().startswith("# title")
    with open(paths["csv"]) as fh:
        got = list(csv.DictReader(fh))
    assert [r["name"] for r in got] == ["net0", "net1"] and float(got[0]["uar"]) == pytest.approx(rows[0].uar)


def test_build_table_from_mlflow(
    oof_run: Callable[..., str], fake_oof: Fake, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scores = {f"net{i}": fake_oof(i) for i in range(6)}
    oof_run("net2", fake_oof(99))  # an older net2: replaced by the newer one below
    ids = {
        name: oof_run(name, oof, {"paraling.description": f"row {name}", "paraling.model_type": "cnn"})
        for name, oof in scores.items()
    }
    oof_run("pretrain_langid", fake_oof(7), {"paraling.role": "pretrain"})
    oof_run("net9", fake_oof(8), status="FAILED")
    rows = build_table("table1")
    assert [r.name for r in rows] == ["net0", "net1", "net2", "net3", "net4", "net5", "ensemble"]
    assert rows[2].run_id == ids["net2"] and rows[2].uar == pytest.approx(score_row("n", scores["net2"]).uar)
    assert all(r.uar == r.uar and r.uar2 == r.uar2 for r in rows)  # every row filled
    members = ["net0", "net2", "net3", "net5"]
    S = np.stack([scores[m].proba for m in members]).astype(np.float64)
    want = uar(scores["net0"].y, combine(S, method="harmonic").argmax(1), 3)
    assert rows[-1].uar == pytest.approx(want) and "harmonic" in rows[-1].description
    # a missing member drops the ensemble row; the command writes the three files
    assert [r.name for r in build_table("table1", ensemble=["net0", "net7"])][-1] == "net5"
    assert (
        main(
            [
                "report",
                "--experiment",
                "table1",
                "--out",
                str(tmp_path / "out"),
                "--names",
                "net0",
                "net2",
                "net3",
                "net5",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "| ensemble | net0 + net2 + net3 + net5 (harmonic mean) |" in out and "| net1 |" not in out
    assert {p.name for p in (tmp_path / "out").iterdir()} == {"table.md", "table.csv", "uar.png"}


def test_unknown_experiment_is_a_clean_error(mlflow_uri: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["report", "--experiment", "nope"])
    assert exc.value.code == 2 and "nope" in capsys.readouterr().err
