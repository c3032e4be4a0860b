"""``paraling report --compare A B``: any two tracked runs (or rows) on the same folds, with a paired test.

``A`` and ``B`` are each an MLflow run id (that one run, its seed from the tag ``paraling.seed``) or a run *name*
in ``--experiment`` (the newest finished run of that name per seed, like a report row). The two are paired on
their shared (seed, fold) units; runs whose folds differ (``paraling.fold_digest``) are refused. Comparing two
single runs of different seeds pairs their folds as they are (fold k of one against fold k of the other); that is
only meaningful when the seed does not change the speaker folds, which the fold digests check.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from paraling.errors import EnsembleError
from paraling.report.comparisons import Comparison, RowScores, compare_pair
from paraling.report.spec import AUTO, resolve_negative_class
from paraling.report.table import Row, group_by_seed, score_runs

if TYPE_CHECKING:
    from paraling.tracking.runs import TrackedRun

__all__ = ["Compared", "compare_runs", "render_compared"]


@dataclass
class Compared:
    """Both sides of a comparison and its test."""

    rows: tuple[Row, Row]
    scores: tuple[RowScores, RowScores]
    comparison: Comparison


def _resolve(spec: str, experiment: str | None, client: Any) -> dict[int, TrackedRun]:
    from paraling.tracking.runs import RUN_ID, find_runs

    if RUN_ID.match(spec):
        (run,) = find_runs(run_ids=[spec], check_model=False, client=client)
        return dict(group_by_seed([run])[run.config_name])
    if not experiment:
        raise EnsembleError(f"{spec!r} is not a run id; to compare runs by name, also pass --experiment NAME")
    groups = group_by_seed(find_runs(experiment, check_model=False, client=client))
    if spec not in groups:
        raise EnsembleError(
            f"no finished run named {spec!r} in experiment {experiment!r}; names there: {sorted(groups)}"
        )
    return dict(groups[spec])


def compare_runs(
    a: str,
    b: str,
    experiment: str | None = None,
    uri: str | None = None,
    negative_class: str | None = AUTO,
    test: str = "wilcoxon",
    metric: str = "uar",
) -> Compared:
    """Score ``a`` and ``b`` (run ids or names in ``experiment``) and test them on their shared units.

    ``negative_class``: the 2-class UAR's "no" class: ``auto`` (the runs' ``corpus.negative_class``), a class name,
    or ``None``. ``metric``: what is tested per (seed, fold): ``uar``, ``wa`` or ``macro_f1``.

    Raises:
        EnsembleError: A run or name that does not exist, runs on different folds, or no shared unit.
        ConfigError: ``negative_class="auto"`` and the runs name different negative classes.
    """
    from paraling.tracking.runs import load_scores, make_client

    client = make_client(uri)
    sides = [_resolve(s, experiment, client) for s in (a, b)]
    if len(sides[0]) == 1 and len(sides[1]) == 1 and set(sides[0]) != set(sides[1]):
        sides = [{0: next(iter(s.values()))} for s in sides]  # two single runs of different seeds: fold by fold
    negative = resolve_negative_class(negative_class, [r.tags for s in sides for r in s.values()])
    rows, scores = [], []
    for label, runs in zip((a, b), sides, strict=True):
        with tempfile.TemporaryDirectory() as tmp:
            oofs = dict(zip(runs, load_scores(list(runs.values()), tmp, client=client), strict=True))
        row, sc = score_runs(label, runs, oofs, negative, metric)
        rows.append(row)
        scores.append(sc)
    comparison = compare_pair(a, b, scores[0], scores[1], test)
    return Compared((rows[0], rows[1]), (scores[0], scores[1]), comparison)


def render_compared(c: Compared, units: Sequence[tuple[int, int]] | None = None) -> str:
    """Markdown: both rows, the per-unit UARs side by side, and the test."""
    from paraling.report.render import render_comparisons, render_markdown

    a, b = c.comparison.a, c.comparison.b
    lines = ["| seed | fold | " + a + " | " + b + " | a - b |", "|---:|---:|---:|---:|---:|"]
    for u in units or c.comparison.units:
        va, vb = c.scores[0].uar[u], c.scores[1].uar[u]
        lines.append(f"| {u[0]} | {u[1]} | {100 * va:.1f} | {100 * vb:.1f} | {100 * (va - vb):+.1f} |")
    return "\n".join([render_markdown(list(c.rows)), "\n".join(lines) + "\n", render_comparisons([c.comparison])])
