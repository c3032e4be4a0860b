"""Report files (``conf/report/*.yaml``): the study's choices live in config, the library's defaults are neutral."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from paraling.cli.main import main
from paraling.errors import ConfigError
from paraling.report.spec import AUTO, ReportSpec, load_report_spec, resolve_negative_class
from paraling.report.table import build_report
from paraling.scoring.oof import OOFScores


def test_the_shipped_table1_file_is_the_papers_table() -> None:
    spec = load_report_spec("table1")
    assert spec.ensemble == ("net0", "net2", "net3", "net5") and spec.combiner == "harmonic"
    assert ("net2", "net1") in spec.pairs and ("ensemble", "@best-member") in spec.pairs
    assert spec.vote_rows == {"net2": ("net3", "majority")} and spec.negative_class == AUTO


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("ensembel: [a]\n", r"unknown keys \['ensembel'\]"),
        ("combiner: median\n", "combiner must be one of"),
        ("pairs: [[a, b, c]]\n", "each pair names two rows"),
        ("vote_rows: {net2: {from: net3, vote: loudest}}\n", "vote_rows.net2.vote must be one of"),
        ("ensemble: net0\n", "ensemble must be a list of run names"),
        ("- a\n", "a report file is a mapping"),
    ],
)
def test_a_bad_report_file_is_one_error_naming_the_file_and_key(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match) as exc:
        load_report_spec(path)
    assert str(path) in str(exc.value)


def test_a_missing_report_file_names_the_shipped_ones() -> None:
    with pytest.raises(ConfigError, match=r"no report file .*table2\.yaml.*\['table1'\]"):
        load_report_spec("table2")


def test_auto_takes_the_runs_negative_class_and_refuses_a_mix() -> None:
    tag = "paraling.negative_class"
    assert resolve_negative_class(AUTO, [{tag: "No_Food"}, {tag: "No_Food"}, {}]) == "No_Food"
    assert resolve_negative_class(AUTO, [{}, {}]) is None
    assert resolve_negative_class("Other", [{tag: "No_Food"}]) == "Other"
    assert resolve_negative_class(None, [{tag: "No_Food"}]) is None
    with pytest.raises(ConfigError, match=r"different negative classes \['No_Food', 'neutral'\]"):
        resolve_negative_class(AUTO, [{tag: "No_Food"}, {tag: "neutral"}])


def test_library_defaults_add_nothing_of_the_paper(
    oof_run: Callable[..., str], fake_oof: Callable[..., OOFScores], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for i in range(4):
        oof_run(f"net{i}", fake_oof(i))
    plain = build_report("table1", curves=False)
    assert [r.name for r in plain.rows] == ["net0", "net1", "net2", "net3"] and not plain.comparisons
    assert plain.rows[0].uar2 == plain.rows[0].uar2  # the runs' own negative class (tag) gives the 2-class UAR
    assert build_report("table1", negative_class=None, curves=False).rows[0].uar2 != plain.rows[0].uar2  # NaN
    paper = build_report("table1", curves=False, **ReportSpec(ensemble=("net0", "net2")).as_kwargs())
    assert paper.rows[-1].name == "ensemble"
    out = tmp_path / "out"
    assert main(["report", "--experiment", "table1", "--spec", "none", "--out", str(out)]) == 0
    assert "| ensemble |" not in capsys.readouterr().out
    mine = tmp_path / "mine.yaml"
    mine.write_text("ensemble: [net1, net3]\ncombiner: mean\npairs: [[net3, net1]]\n")
    assert main(["report", "--experiment", "table1", "--spec", str(mine), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| ensemble | net1 + net3 (mean mean) |" in printed and "| net3 | net1 | 2 |" in printed
