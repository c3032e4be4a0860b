"""``paraling ensemble``: assemble, evaluate, track and register an ensemble of tracked runs.

Example::

    paraling ensemble --experiment paraling --combiner harmonic --register eating --alias champion
    paraling ensemble --experiment table1 --names net0 net2 net3 net5 --method all --combiner harmonic --name ensemble
"""

from __future__ import annotations

import argparse
import os

from paraling.ensemble import COMBINERS, METHODS
from paraling.secrets import mask_secrets

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``paraling ensemble``."""
    p = argparse.ArgumentParser(
        prog="paraling ensemble",
        description="Select an ensemble from the out-of-fold scores of finished runs (Caruana et al. "
        "2004), report its nested-CV UAR next to the best single run, log it as an MLflow run and "
        "optionally register it.",
    )
    p.add_argument("--experiment", help="MLflow experiment holding the runs (the ensemble run is logged there)")
    which = p.add_mutually_exclusive_group()
    which.add_argument(
        "--study", help="only the trials of this sweep (tag paraling.sweep.study, or children of its parent run)"
    )
    which.add_argument("--runs", nargs="+", default=(), metavar="RUN_ID", help="exactly these runs instead")
    which.add_argument(
        "--names",
        nargs="+",
        default=(),
        metavar="NAME",
        help="exactly the newest finished run of each of these names (tag paraling.name) in --experiment, "
        "e.g. net0 net2 net3 net5 (the Table 1 ensemble, with --method all --combiner harmonic)",
    )
    p.add_argument("--method", choices=METHODS, default="greedy", help="selection method (default: greedy)")
    p.add_argument(
        "--combiner",
        choices=COMBINERS,
        default="mean",
        help="how member probabilities are combined (default: mean; the paper: harmonic)",
    )
    p.add_argument(
        "--top-k",
        type=int,
        default=None,
        help="greedy: size of the sorted initialisation (default 1); top-k: members (default 3)",
    )
    p.add_argument("--max-iter", type=int, default=50, help="greedy additions (default: 50)")
    p.add_argument("--bagging", type=int, default=0, help="greedy: number of bags of the library (default: 0)")
    p.add_argument("--bag-fraction", type=float, default=0.5, help="fraction of the library per bag")
    p.add_argument("--seed", type=int, default=0, help="bagging seed")
    p.add_argument(
        "--tracking-uri",
        help="MLflow tracking/registry URI (default: $MLFLOW_TRACKING_URI or sqlite:///mlruns/mlflow.db)",
    )
    p.add_argument("--register", metavar="NAME", help="register the ensemble as an MLflow model NAME")
    p.add_argument("--alias", default="champion", help="alias of the new model version (default: champion)")
    p.add_argument("--name", help="name of the ensemble run")
    return p


def main(argv: list[str]) -> int:
    """Entry point; prints the summary, returns 0 (errors raise :class:`~paraling.errors.ParalingError`)."""
    a = build_parser().parse_args(argv)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    from paraling.ensemble.assembly import assemble_ensemble, format_summary

    result = assemble_ensemble(
        a.experiment,
        study=a.study,
        run_ids=a.runs,
        names=a.names,
        method=a.method,
        combiner=a.combiner,
        top_k=a.top_k,
        max_iter=a.max_iter,
        bagging=a.bagging,
        bag_fraction=a.bag_fraction,
        seed=a.seed,
        uri=a.tracking_uri,
        register=a.register,
        alias=a.alias or None,
        run_name=a.name,
    )
    print(mask_secrets(format_summary(result)))
    return 0
