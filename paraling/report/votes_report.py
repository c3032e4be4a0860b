"""``paraling report --votes``: which vote wins on this corpus, over every CNN run of an experiment.

Every CNN run scores its out-of-fold utterances with every vote (``oof/all_aggregations.npz``: majority, mean,
logmean, weighted, weighted_soft) from the same window posteriors. This report reads them back for the newest run of
each name and seed, scores each vote per (seed, fold) unit of each row, and compares each vote with a reference vote
(default: the paper's ``weighted``) by a paired test per row and over the rows: on the (seed, fold) units averaged
over the rows that have them, since rows of one experiment share their seeds and folds and are not independent.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from paraling.errors import EnsembleError
from paraling.report.table import group_by_seed, score_seeds
from paraling.report.vote_rows import load_votes
from paraling.scoring.aggregation import METHODS
from paraling.scoring.paired import PairedResult, paired_test

__all__ = ["ALL", "VoteReport", "build_votes", "render_votes"]


@dataclass
class VoteReport:
    """Per vote and row: UAR per ``(seed, fold)``; per vote but the reference: its paired tests against it.

    Attributes:
        experiment: The MLflow experiment.
        reference: The vote the others are compared with.
        names: The rows (run names), in order.
        units: ``vote -> row -> (seed, fold) -> UAR``.
        tests: ``vote -> row -> result``, plus ``vote -> ALL`` on the units averaged over the rows.
    """

    experiment: str
    reference: str
    names: list[str] = field(default_factory=list)
    units: dict[str, dict[str, dict[tuple[int, int], float]]] = field(default_factory=dict)
    tests: dict[str, dict[str, PairedResult]] = field(default_factory=dict)


ALL = "all rows"
"""The key of the test over all rows in :attr:`VoteReport.tests`."""


def _pooled(per_row: dict[str, dict[tuple[int, int], float]]) -> dict[tuple[int, int], float]:
    """Per (seed, fold): the mean over the rows that have it."""
    keys = sorted({k for units in per_row.values() for k in units})
    return {k: float(np.mean([u[k] for u in per_row.values() if k in u])) for k in keys}


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
        EnsembleError: No finished CNN run, a run without every vote's scores (``oof/all_aggregations.npz``, written
            by every CNN run), or ``reference`` is not a vote.
    """
    from paraling.tracking.runs import find_runs, load_scores, make_client

    if reference not in METHODS:
        raise EnsembleError(f"the reference vote must be one of {', '.join(METHODS)}, but got {reference!r}")
    client = make_client(uri)
    runs = [r for r in find_runs(experiment, uri=uri, check_model=False, client=client) if r.kind == "cnn"]
    groups = group_by_seed(runs, seeds)
    chosen = sorted(n for n in groups if names is None or n in names)
    if not chosen:
        raise EnsembleError(f"no finished CNN runs in experiment {experiment!r}; votes exist for CNN runs only")
    report = VoteReport(experiment, reference, chosen, {m: {n: {} for n in chosen} for m in METHODS})
    with tempfile.TemporaryDirectory() as tmp:
        for name in chosen:
            for seed, run in sorted(groups[name].items()):
                (oof,) = load_scores([run], tmp, client=client)
                for vote, scored in load_votes(oof, run.run_id, METHODS, tmp, client).items():
                    report.units[vote][name].update(score_seeds(name, {seed: scored}, None)[1].uar)
    for vote in METHODS:
        if vote == reference:
            continue
        report.tests[vote] = {}
        pairs = {n: (report.units[vote][n], report.units[reference][n]) for n in chosen}
        pairs[ALL] = (_pooled(report.units[vote]), _pooled(report.units[reference]))
        for row, (a, b) in pairs.items():
            keys = sorted(b)
            report.tests[vote][row] = paired_test([a[k] for k in keys], [b[k] for k in keys], test)
    return report


def _mean_std(values: Sequence[float]) -> str:
    return f"{100 * np.mean(values):.1f} ± {100 * np.std(values):.1f}"


def _test_cell(t: PairedResult) -> str:
    ci = f"[{100 * t.ci_low:+.1f}, {100 * t.ci_high:+.1f}]"
    return f"{100 * t.mean_diff:+.1f} {ci}, {t.wins}/{t.losses}, p {t.p_value:.2g}"


def render_votes(report: VoteReport) -> str:
    """Markdown: each vote's UAR per row (mean ± std over seeds x folds), then its paired tests against the
    reference (mean difference [95% CI], wins/losses, p) per row and over the rows."""
    cols = [*report.names, ALL]
    lines = [
        f"# Votes in {report.experiment}: UAR in %, mean ± std over seeds x folds",
        "",
        "| vote | " + " | ".join(cols) + " |",
        "|---|" + "---:|" * len(cols),
    ]
    for vote in METHODS:
        per_row = report.units[vote]
        cells = [_mean_std(list(per_row[n].values())) for n in report.names]
        lines.append(f"| {vote} | " + " | ".join([*cells, _mean_std(list(_pooled(per_row).values()))]) + " |")
    lines += [
        "",
        f"## Against {report.reference}: mean paired difference in UAR points [95% CI], wins/losses, p",
        "",
        "| vote | " + " | ".join(cols) + " |",
        "|---|" + "---|" * len(cols),
    ]
    for vote, tests in report.tests.items():
        lines.append(f"| {vote} | " + " | ".join(_test_cell(tests[c]) for c in cols) + " |")
    test = next(iter(next(iter(report.tests.values())).values())).test
    lines += ["", f"Units: (seed, fold) per row; '{ALL}': each unit averaged over the rows that have it. Test: {test}."]
    return "\n".join(lines)
