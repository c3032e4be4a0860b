"""``paraling report --votes``: which vote wins on this corpus, over every CNN run of an experiment.

Every CNN run scores its out-of-fold utterances with every vote (``oof/all_aggregations.npz``: majority, mean,
logmean, weighted, weighted_soft) from the same window posteriors. This report reads them back for the newest run of
each name and seed, scores each vote per (run name, seed, fold) unit, and compares each vote with a reference vote
(default: the paper's ``weighted``) by a paired test over all units of all rows; it is how the default vote
(``conf/config.yaml``: ``aggregation``) was chosen (docs/table1.md).
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from paraling.errors import EnsembleError
from paraling.pipeline.report import group_by_seed, score_seeds
from paraling.pipeline.vote_rows import load_vote
from paraling.scoring.aggregation import METHODS
from paraling.scoring.paired import PairedResult, paired_test

__all__ = ["VoteReport", "build_votes", "render_votes"]


@dataclass
class VoteReport:
    """Per vote: UAR per unit ``(name, seed, fold)``; per vote but the reference: its paired test against it."""

    experiment: str
    reference: str
    units: dict[str, dict[tuple[str, int, int], float]] = field(default_factory=dict)
    tests: dict[str, PairedResult] = field(default_factory=dict)
    names: list[str] = field(default_factory=list)


def build_votes(
    experiment: str,
    uri: str | None = None,
    names: Sequence[str] | None = None,
    seeds: Sequence[int] | None = None,
    reference: str = "weighted",
    test: str = "wilcoxon",
) -> VoteReport:
    """Score every vote of the CNN runs of ``experiment`` and test each against ``reference``.

    Raises:
        EnsembleError: No finished run with every vote's scores, or ``reference`` is not a vote.
    """
    from paraling.tracking.runs import find_runs, load_scores, make_client

    if reference not in METHODS:
        raise EnsembleError(f"--vote-reference must be one of {', '.join(METHODS)}, but got {reference!r}")
    client = make_client(uri)
    runs = [r for r in find_runs(experiment, uri=uri, check_model=False, client=client) if r.kind == "cnn"]
    groups = group_by_seed(runs, seeds)
    chosen = sorted(n for n in groups if names is None or n in names)
    if not chosen:
        raise EnsembleError(f"no finished CNN runs in experiment {experiment!r}; votes exist for CNN runs only")
    report = VoteReport(experiment, reference, {m: {} for m in METHODS}, names=chosen)
    with tempfile.TemporaryDirectory() as tmp:
        for name in chosen:
            for seed, run in sorted(groups[name].items()):
                (oof,) = load_scores([run], tmp, client=client)
                for vote in METHODS:
                    _, sc = score_seeds(name, {seed: load_vote(oof, run.run_id, vote, tmp, client)}, None)
                    report.units[vote].update({(name, s, f): v for (s, f), v in sc.uar.items()})
    ref = report.units[reference]
    keys = sorted(ref)
    for vote in METHODS:
        if vote != reference:
            report.tests[vote] = paired_test([report.units[vote][k] for k in keys], [ref[k] for k in keys], test)
    return report


def _mean_std(values: Sequence[float]) -> str:
    return f"{100 * np.mean(values):.1f} ± {100 * np.std(values):.1f}"


def render_votes(report: VoteReport) -> str:
    """Markdown: one column per row name (mean ± std over seeds x folds), the pooled mean, the paired test."""
    head = ["vote", *report.names, "all rows", f"vs {report.reference} [95% CI]", "wins / losses", "p"]
    lines = [
        f"# Votes in {report.experiment}: UAR in %, mean ± std over seeds x folds",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for vote in METHODS:
        units = report.units[vote]
        cells = [_mean_std([v for (n, _, _), v in units.items() if n == name]) for name in report.names]
        t = report.tests.get(vote)
        vs = ["", "", ""]
        if t is not None:
            ci = f"{100 * t.mean_diff:+.1f} [{100 * t.ci_low:+.1f}, {100 * t.ci_high:+.1f}]"
            vs = [ci, f"{t.wins} / {t.losses}", f"{t.p_value:.2g}"]
        lines.append("| " + " | ".join([vote, *cells, _mean_std(list(units.values())), *vs]) + " |")
    n = len(report.units[report.reference])
    lines += ["", f"{n} units (run name, seed, fold); paired test: {next(iter(report.tests.values())).test}."]
    return "\n".join(lines)
