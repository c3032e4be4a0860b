"""``paraling report``: the comparison table of one MLflow experiment (Markdown, CSV, bar chart).

Example::

    paraling train -m experiment=net0,net1,net2,net3,net4,net5
    paraling ensemble --experiment table1 --names net0 net2 net3 net5 --method all --combiner harmonic  # optional
    paraling report --experiment table1            # writes reports/table1/{table.md,table.csv,uar.png,...}
    paraling report --experiment mine --spec none  # one row per run name, nothing of the paper's Table 1
    paraling train -m experiment=net1,net2,net3 seed=0,1,2 && paraling report --experiment table1  # over seeds
    paraling report --compare net3 net2 --experiment table1      # any two runs or names, paired test
    paraling report --votes --experiment table1                  # which vote wins on these runs
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from paraling.ensemble import COMBINERS
from paraling.scoring.aggregation import METHODS
from paraling.scoring.paired import TESTS

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``paraling report``."""
    p = argparse.ArgumentParser(
        prog="paraling report",
        description="Table of the newest finished run of each name in an MLflow experiment: UAR (k classes and "
        "2 classes: the corpus's negative class against the rest), mean +/- std over folds, from the runs' "
        "out-of-fold scores; plus what the report file (--spec) adds: by default the paper's Table 1 "
        "(conf/report/table1.yaml: the ensemble net0+net2+net3+net5, harmonic mean, taken from a logged ensemble "
        "run of exactly those runs when there is one; paired tests; net2 from net3's runs).",
    )
    p.add_argument(
        "--experiment",
        default=None,
        help="MLflow experiment (the net0..net5 configs log to table1); needed unless --compare names two run ids",
    )
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--compare",
        nargs=2,
        metavar=("A", "B"),
        default=None,
        help="compare two runs (MLflow run ids, or run names in --experiment: every seed) on their shared folds "
        "with a paired test, instead of the table",
    )
    mode.add_argument(
        "--votes",
        action="store_true",
        help="instead of the table: every vote (majority, mean, logmean, weighted, weighted_soft) of the CNN runs, "
        "per row over seeds x folds, each paired-tested against --vote-reference over all units",
    )
    p.add_argument(
        "--vote-reference",
        choices=METHODS,
        default="weighted",
        help="with --votes: the vote the others are compared with (default: weighted)",
    )
    p.add_argument(
        "--seeds",
        nargs="+",
        type=int,
        default=None,
        metavar="SEED",
        help="only runs of these seeds (default: every seed found; runs of one name and seed: the newest counts)",
    )
    p.add_argument(
        "--test",
        choices=TESTS,
        default="wilcoxon",
        help="paired test over the (seed, fold) units: wilcoxon signed-rank (default) or a sign-flip permutation test",
    )
    _metric_arguments(p)
    p.add_argument("--out", default=None, help="output folder (default: reports/<experiment>)")
    p.add_argument("--names", nargs="+", default=None, metavar="NAME", help="only these run names")
    p.add_argument(
        "--spec",
        default="table1",
        help="report file: a name under conf/report/ or a .yaml path, setting the ensemble row, combiner, "
        "negative class, paired tests and vote rows (default: table1, the paper's; 'none': just the runs' rows)",
    )
    p.add_argument(
        "--ensemble",
        default=None,
        help="comma-separated run names to combine into an ensemble row, or 'none' (default: the report file's)",
    )
    p.add_argument(
        "--combiner",
        choices=COMBINERS,
        default=None,
        help="how the ensemble combines class probabilities (default: the report file's; harmonic in table1)",
    )
    p.add_argument(
        "--negative-class",
        default=None,
        help="class forming the 'no' side of the 2-class UAR: a class name, 'auto' (the runs' own "
        "corpus.negative_class) or 'none' (default: the report file's, auto in table1)",
    )
    p.add_argument("--title", default=None, help="title of the Markdown table and the chart")
    p.add_argument(
        "--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or sqlite:///mlruns/mlflow.db)"
    )
    return p


def _metric_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--metric",
        choices=("uar", "wa", "macro_f1"),
        default="uar",
        help="what the paired tests compare per (seed, fold): UAR (default), weighted accuracy or macro-F1 (the "
        "table shows all three)",
    )
    p.add_argument("--sort", action="store_true", help="order the rows by --metric, best first")


def _report_kwargs(a: argparse.Namespace) -> dict[str, Any]:
    """The report file's choices (``--spec``), with the options given on the command line on top."""
    from paraling.report.spec import ReportSpec, load_report_spec

    kwargs = (ReportSpec() if a.spec.lower() == "none" else load_report_spec(a.spec)).as_kwargs()
    if a.ensemble is not None:
        no_ensemble = a.ensemble.strip().lower() in ("", "none")
        kwargs["ensemble"] = [] if no_ensemble else [s.strip() for s in a.ensemble.split(",")]
    if a.combiner is not None:
        kwargs["combiner"] = a.combiner
    if a.negative_class is not None:
        kwargs["negative_class"] = None if a.negative_class.lower() == "none" else a.negative_class
    return kwargs


def main(argv: list[str]) -> int:
    """Entry point: prints the Markdown table and where the files went; returns 0."""
    parser = build_parser()
    a = parser.parse_args(argv)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    kwargs = _report_kwargs(a)
    if a.compare:
        from paraling.report.compare import compare_runs, render_compared

        first, second = a.compare
        negative = kwargs["negative_class"]
        compared = compare_runs(first, second, a.experiment, a.tracking_uri, negative, a.test, a.metric)
        print(render_compared(compared))
        return 0
    if not a.experiment:
        parser.error("pass --experiment NAME (or --compare A B)")
    if a.votes:
        from paraling.report.votes_report import build_votes, render_votes

        votes = build_votes(a.experiment, a.tracking_uri, a.names, a.seeds, a.vote_reference, a.test)
        print(render_votes(votes))
        return 0
    from paraling.report.render import render_report, write_report
    from paraling.report.table import build_report

    report = build_report(
        a.experiment, a.tracking_uri, names=a.names, seeds=a.seeds, test=a.test, metric=a.metric, sort=a.sort, **kwargs
    )
    title = a.title or f"paraling report: {a.experiment}"
    out = a.out or os.path.join("reports", a.experiment)
    paths = write_report(report.rows, out, title, report.comparisons, report.curves)
    print(render_report(report.rows, report.comparisons, report.curves))
    print("\n".join(f"{k}: {v}" for k, v in paths.items()))
    return 0
