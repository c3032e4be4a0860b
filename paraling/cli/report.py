"""``paraling report``: the comparison table of one MLflow experiment (Markdown, CSV, bar chart).

Example::

    paraling train -m experiment=net0,net1,net2,net3,net4,net5
    paraling ensemble --experiment table1 --names net0 net2 net3 net5 --method all --combiner harmonic  # optional
    paraling report --experiment table1            # writes reports/table1/{table.md,table.csv,uar.png}
"""

from __future__ import annotations

import argparse
import os

from paraling.ensemble import COMBINERS
from paraling.pipeline.report import DEFAULT_ENSEMBLE

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``paraling report``."""
    p = argparse.ArgumentParser(
        prog="paraling report",
        description="Table of the newest finished run of each name in an MLflow experiment: UAR (k classes and "
        "2 classes, food / no food), mean +/- std over folds, from the runs' out-of-fold scores; plus the "
        "ensemble of the paper (net0+net2+net3+net5, harmonic mean), taken from a logged ensemble run of exactly "
        "those runs when there is one (paraling ensemble --names ...).",
    )
    p.add_argument("--experiment", required=True, help="MLflow experiment (the net0..net5 configs log to table1)")
    p.add_argument("--out", default=None, help="output folder (default: reports/<experiment>)")
    p.add_argument("--names", nargs="+", default=None, metavar="NAME", help="only these run names")
    p.add_argument(
        "--ensemble",
        default=",".join(DEFAULT_ENSEMBLE),
        help="comma-separated run names to combine into an ensemble row, or 'none' "
        f"(default: {','.join(DEFAULT_ENSEMBLE)})",
    )
    p.add_argument(
        "--combiner",
        choices=COMBINERS,
        default="harmonic",
        help="how the ensemble combines class probabilities (default: harmonic, as in the paper)",
    )
    p.add_argument(
        "--negative-class",
        default="No_Food",
        help="class forming the 'no' side of the 2-class UAR (default: No_Food; 'none' to drop it)",
    )
    p.add_argument("--title", default=None, help="title of the Markdown table and the chart")
    p.add_argument(
        "--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or sqlite:///mlruns/mlflow.db)"
    )
    return p


def main(argv: list[str]) -> int:
    """Entry point: prints the Markdown table and where the files went; returns 0."""
    a = build_parser().parse_args(argv)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    from paraling.pipeline.report import build_table, render_markdown, write_report

    ensemble = [] if a.ensemble.strip().lower() in ("", "none") else [s.strip() for s in a.ensemble.split(",")]
    negative = None if a.negative_class.lower() == "none" else a.negative_class
    rows = build_table(a.experiment, a.tracking_uri, ensemble, a.combiner, negative, a.names)
    title = a.title or f"paraling report: {a.experiment}"
    paths = write_report(rows, a.out or os.path.join("reports", a.experiment), title)
    print(render_markdown(rows))
    print("\n".join(f"{k}: {v}" for k, v in paths.items()))
    return 0
