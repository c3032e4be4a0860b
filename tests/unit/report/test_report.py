"""``paraling report``: scoring from out-of-fold files, run selection in MLflow, the ensemble row, the outputs."""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from paraling.cli.main import main
from paraling.ensemble import combine
from paraling.errors import EnsembleError
from paraling.report.render import render_markdown, write_report
from paraling.report.spec import load_report_spec
from paraling.report.table import build_table, score_row
from paraling.scoring.metrics import binary_uar, uar
from paraling.scoring.oof import OOFScores

Fake = Callable[..., OOFScores]


def table1(**over: object) -> dict[str, object]:
    """The keyword arguments of ``conf/report/table1.yaml`` (what ``paraling report`` uses), with ``over`` on top."""
    return {**load_report_spec("table1").as_kwargs(), **over}


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
    rows = build_table("table1", **table1())
    assert [r.name for r in rows] == ["net0", "net1", "net2", "net3", "net4", "net5", "ensemble"]
    assert rows[2].run_id == ids["net2"] and rows[2].uar == pytest.approx(score_row("n", scores["net2"]).uar)
    assert all(r.uar == r.uar and r.uar2 == r.uar2 for r in rows)  # every row filled
    members = ["net0", "net2", "net3", "net5"]
    S = np.stack([scores[m].proba for m in members]).astype(np.float64)
    want = uar(scores["net0"].y, combine(S, method="harmonic").argmax(1), 3)
    assert rows[-1].uar == pytest.approx(want) and "harmonic" in rows[-1].description
    # a missing member drops the ensemble row; the command writes the three files
    assert [r.name for r in build_table("table1", **table1(ensemble=["net0", "net7"]))][-1] == "net5"
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
    assert {p.name for p in (tmp_path / "out").iterdir()} == {"table.md", "table.csv", "uar.png", "tests.csv"}


def test_unknown_experiment_is_a_clean_error(mlflow_uri: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["report", "--experiment", "nope"])
    assert exc.value.code == 2 and "nope" in capsys.readouterr().err


def _seeded_rows(oof_run: Callable[..., str], fake_oof: Fake, digest: str = "d") -> dict[tuple[str, int], str]:
    """net1 (noisy) and net2 (cleaner) in seeds 0-2, same folds; net2 must win every paired unit on average."""
    ids = {}
    for seed in (0, 1, 2):
        for name, noise in (("net1", 0.9), ("net2", 0.7)):
            tags = {"paraling.seed": str(seed), "paraling.fold_digest": f"{digest}{seed}"}
            ids[(name, seed)] = oof_run(name, fake_oof(10 * seed + len(name), noise), tags)
    return ids


def test_rows_over_seeds_with_paired_tests(oof_run: Callable[..., str], fake_oof: Fake, tmp_path: Path) -> None:
    from paraling.report.render import render_report
    from paraling.report.table import build_report

    _seeded_rows(oof_run, fake_oof)
    report = build_report("table1", **table1(ensemble=["net1", "net2"]))
    net1, net2, ens = report.rows
    assert (net1.name, net2.name, ens.name) == ("net1", "net2", "ensemble")
    assert net1.n_seeds == net2.n_seeds == ens.n_seeds == 3
    units = report.scores["net2"].uar
    assert sorted(units) == [(s, f) for s in (0, 1, 2) for f in (0, 1)]
    assert net2.uar_mean == pytest.approx(np.mean(list(units.values())))
    assert net2.uar_std == pytest.approx(np.std(list(units.values())))
    pooled = [score_row("x", fake_oof(10 * s + 4, 0.7)).uar for s in (0, 1, 2)]
    assert net2.uar == pytest.approx(np.mean(pooled))
    (c21, c_ens) = report.comparisons  # net2 vs net1; the ensemble vs its best member (net2)
    assert (c21.a, c21.b, c21.result.n) == ("net2", "net1", 6) and (c_ens.a, c_ens.b) == ("ensemble", "net2")
    diffs = [report.scores["net2"].uar[u] - report.scores["net1"].uar[u] for u in c21.units]
    assert c21.result.mean_diff == pytest.approx(np.mean(diffs)) and c21.result.mean_diff > 0
    md = render_report(report.rows, report.comparisons, report.curves)
    assert "over seeds x folds" in md and "## Paired tests" in md and "| net2 | net1 | 6 |" in md
    # only two seeds
    two = build_report("table1", **table1(ensemble=[], seeds=[0, 2]))
    assert [r.n_seeds for r in two.rows] == [2, 2] and two.comparisons[0].result.n == 4


def test_rows_on_different_folds_are_not_paired(oof_run: Callable[..., str], fake_oof: Fake) -> None:
    from paraling.report.table import build_report

    oof_run("net1", fake_oof(1), {"paraling.fold_digest": "aaa"})
    oof_run("net2", fake_oof(2), {"paraling.fold_digest": "bbb"})
    with pytest.raises(EnsembleError, match="same speaker folds"):
        build_report("table1", **table1(ensemble=[]))


def test_compare_two_runs_or_names(
    oof_run: Callable[..., str], fake_oof: Fake, capsys: pytest.CaptureFixture[str]
) -> None:
    from paraling.report.compare import compare_runs

    ids = _seeded_rows(oof_run, fake_oof)
    by_name = compare_runs("net2", "net1", "table1")
    assert by_name.comparison.result.n == 6 and by_name.rows[0].n_seeds == 3
    by_id = compare_runs(ids[("net2", 1)], ids[("net1", 1)])
    assert by_id.comparison.units == ((1, 0), (1, 1))
    s2, s1 = by_name.scores
    assert by_id.comparison.result.mean_diff == pytest.approx(
        np.mean([s2.uar[(1, k)] - s1.uar[(1, k)] for k in (0, 1)])
    )
    assert main(["report", "--compare", "net2", "net1", "--experiment", "table1", "--test", "permutation"]) == 0
    out = capsys.readouterr().out
    assert "| seed | fold | net2 | net1 | a - b |" in out and "p (permutation)" in out
    with pytest.raises(SystemExit) as exc:  # a name needs its experiment
        main(["report", "--compare", "net2", "net1"])
    assert exc.value.code == 2 and "--experiment" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["report", "--compare", "net2", "net9", "--experiment", "table1"])
    assert "net9" in capsys.readouterr().err


def test_learning_curves_from_fold_histories(
    oof_run: Callable[..., str], fake_oof: Fake, mlflow_uri: str, tmp_path: Path
) -> None:
    from mlflow.tracking import MlflowClient

    from paraling.pipeline.cv import fold_metric, legacy_fold_metric
    from paraling.report.render import write_report
    from paraling.report.table import build_report

    client = MlflowClient(mlflow_uri)
    rising = [0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]  # still climbing at the end of its 8 epochs
    flat = [0.5, 0.7, 0.8, 0.8, 0.8, 0.8, 0.79, 0.8]
    # net1 logged under the names of earlier releases (fold0_val_uar), net2 under val_uar/fold0: both are read
    low_stopped = [0.3, 0.35, 0.3, 0.3, 0.3, 0.3, 0.3]  # early stopping ended it at 7 of 8 epochs, lower
    rows = (
        ("net1", (flat, flat[:6]), legacy_fold_metric),
        ("net2", (rising, rising), fold_metric),
        ("net3", (flat, low_stopped), fold_metric),
    )
    for name, curves, key in rows:
        rid = oof_run(name, fake_oof(len(name)))
        client.log_param(rid, "trainer.epochs", "8")
        for k, values in enumerate(curves):
            for step, v in enumerate(values):
                client.log_metric(rid, key(k, "val_uar"), v, step=step)
        client.log_metric(rid, key(0, "val_uar"), curves[0][0], step=0)  # a resumed epoch, logged twice
    report = build_report("table1", **table1(ensemble=[]))
    c1, c2, c3 = report.curves
    assert c1.name == "net1" and c1.trained == [8, 6] and c1.best == [2, 2] and c1.budget == 8
    assert c1.val_uar[0] == pytest.approx(0.5) and c1.val_uar[7] == pytest.approx(0.8)  # fold 1 stopped at 6
    assert c1.converged and c1.stopped_early == 1 and c1.peak == pytest.approx([0.8, 0.8])
    assert not c2.converged and c2.late_gain == pytest.approx(0.2) and c2.stopped_early == 0
    # net3's mean curve jumps in its last quarter once the low fold stops, but the fold that ran the budget is flat
    assert c3.val_uar[6:].max() - c3.val_uar[:6].max() > 0.1
    assert c3.converged and c3.late_gain == pytest.approx(0.0) and c3.stopped_early == 1
    paths = write_report(report.rows, tmp_path / "r", "t", report.comparisons, report.curves)
    assert paths["curves"].stat().st_size > 1000
    text = paths["markdown"].read_text()
    assert "## Learning curves" in text and "| net2 | 8 | 8 | 0 / 2 |" in text and "no (gain >= 1)" in text


def test_net2_is_net3s_networks_under_the_majority_vote(
    oof_run: Callable[..., str], fake_oof: Fake, tmp_path: Path
) -> None:
    from paraling.report.table import build_report

    majority = {}
    for seed in (0, 1):
        tags = {"paraling.seed": str(seed), "paraling.fold_digest": f"d{seed}"}
        oof_run("net1", fake_oof(20 + seed, 0.8), tags)
        weighted = fake_oof(30 + seed, 0.5)
        majority[seed] = fake_oof(40 + seed, 0.9).proba
        oof_run("net3", weighted, tags, votes={"majority": majority[seed], "weighted": weighted.proba})
    report = build_report("table1", **table1(ensemble=["net1", "net2", "net3"]))
    names = [r.name for r in report.rows]
    assert names == ["net1", "net2", "net3", "ensemble"]
    assert "net2: net3's networks again" in report.rows[-1].description
    only = build_report("table1", **table1(ensemble=[], names=["net2"]))  # net3's runs are read, though not shown
    assert [r.name for r in only.rows] == ["net2"] and only.rows[0].uar == pytest.approx(report.rows[1].uar)
    net2 = report.rows[1]
    assert "net3's networks, majority vote" in net2.description and net2.n_seeds == 2
    expected = [score_row("x", fake_oof(40 + s, 0.9)).uar for s in (0, 1)]  # the majority scores of net3's runs
    assert net2.uar == pytest.approx(np.mean(expected))
    assert report.scores["net2"].runs == report.scores["net3"].runs  # the same runs, another vote
    pairs = {(c.a, c.b) for c in report.comparisons}
    assert {("net2", "net1"), ("net3", "net2")} <= pairs
    # runs of net2's own take precedence; a run without that vote is one clear error
    oof_run("net2", fake_oof(50, 0.7), {"paraling.seed": "0", "paraling.fold_digest": "d0"})
    own = build_report("table1", **table1(ensemble=[], seeds=[0]))
    assert "majority vote" not in next(r for r in own.rows if r.name == "net2").description
    oof_run("net3", fake_oof(60, 0.5), {"paraling.seed": "2", "paraling.fold_digest": "d2"})
    with pytest.raises(EnsembleError, match="all_aggregations"):
        build_report("table1", **table1(ensemble=[], seeds=[2]))


def test_votes_report_pairs_every_vote_with_the_reference(
    oof_run: Callable[..., str], fake_oof: Fake, capsys: pytest.CaptureFixture[str]
) -> None:
    from paraling.report.votes_report import ALL, build_votes, render_votes
    from paraling.scoring.aggregation import METHODS

    for name in ("net1", "net3"):
        for seed in (0, 1):
            base = 10 * seed + len(name)
            votes = {m: fake_oof(base, 0.75).proba for m in METHODS}
            votes["weighted_soft"] = fake_oof(base, 0.45).proba  # the same utterances, less noise: better
            votes["majority"] = fake_oof(base + 100, 0.95).proba  # close to chance
            oof_run(name, fake_oof(base, 0.75), {"paraling.seed": str(seed)}, votes=votes)
    rep = build_votes("table1")
    assert rep.names == ["net1", "net3"] and len(rep.units["weighted"]["net1"]) == 2 * 2  # seeds x folds
    soft, maj, mean = rep.tests["weighted_soft"], rep.tests["majority"], rep.tests["mean"]
    assert soft[ALL].n == 4 and soft["net3"].n == 4  # rows share their (seed, fold) units: pooled, not stacked
    assert all(t.mean_diff > 0 and t.wins > t.losses for t in soft.values())
    assert maj[ALL].mean_diff < 0
    assert mean[ALL].mean_diff == pytest.approx(0.0) and mean[ALL].wins == mean[ALL].losses == 0  # identical
    md = render_votes(rep)
    assert "| weighted_soft |" in md and "## Against weighted" in md and "all rows" in md
    assert main(["report", "--votes", "--experiment", "table1", "--vote-reference", "mean"]) == 0
    assert "## Against mean" in capsys.readouterr().out
    with pytest.raises(EnsembleError, match="reference vote must be one of"):
        build_votes("table1", reference="best")


def test_paper_columns_and_order() -> None:
    from paraling.report.paper import LABELS, row_key
    from paraling.report.table import Row

    def row(name: str, labels: str = ",".join(LABELS)) -> Row:
        return Row(name, "", "cnn", "r", 7, 0.5, 0.5, 0.1, 0.9, 0.9, 0.05, labels=labels)

    md = render_markdown([row("svm"), row("net3"), row("net3_mixup")])
    header, _, svm, net3, mixup = md.splitlines()[:5]
    assert "paper, 7-class | paper, 2-class" in header
    assert "| 56.0 ± 2.7 | 94.3 ± 2.3 |" in svm and "| 63.1 ± 1.4 | 95.0 ± 2.2 |" in net3
    assert mixup.startswith("| net3_mixup |  | cnn |  |  | 50.0 |")  # no paper number for a row the paper lacks
    assert "Table 2 (official test set" in md and "75.9" in md
    assert "paper" not in render_markdown([row("net3", labels="de,fr,es,it,pt,nl,ru")])  # another 7-class task
    names = ["net3_mixup", "net5", "ensemble", "svm", "net10", "net1", "rf"]
    assert sorted(names, key=row_key) == ["svm", "rf", "net1", "net5", "ensemble", "net10", "net3_mixup"]
