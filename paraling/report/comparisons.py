"""Which rows of a report are compared, and how: paired tests over the same (seed, fold) units.

Each row of a report holds, per unit (seed, fold), the fold's UAR (:class:`RowScores`). A comparison pairs the units
two rows share and runs :func:`paraling.scoring.paired.paired_test` on them. Both rows must have been
cross-validated on the same speaker folds for each seed (the runs' ``paraling.fold_digest`` tags agree); rows whose
folds differ are refused rather than paired.

Which pairs are tested is the report file's choice (``pairs`` in ``conf/report/table1.yaml``: the paper's claims,
each row against the row it builds on, and the ensemble against its best member, :data:`BEST_MEMBER`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from paraling.errors import EnsembleError
from paraling.scoring.paired import PairedResult, paired_test

__all__ = ["BEST_MEMBER", "Comparison", "RowScores", "compare_pair", "compare_rows"]

BEST_MEMBER = "@best-member"
"""Stands for the ensemble's best member (highest fold-mean UAR) in a pair."""

Unit = tuple[int, int]  # (seed, fold)


@dataclass
class RowScores:
    """The per-unit scores of one row.

    Attributes:
        uar: ``(seed, fold) -> score`` of :attr:`metric` (k classes; UAR unless the report asks for another).
        uar2: ``(seed, fold) -> UAR`` of the 2-class task (empty without a negative class).
        runs: ``seed -> run id`` (empty for an ensemble combined in the report).
        digests: ``seed -> paraling.fold_digest`` (missing where the run has none).
        metric: What :attr:`uar` holds: ``uar``, ``wa`` or ``macro_f1``.
    """

    uar: dict[Unit, float] = field(default_factory=dict)
    uar2: dict[Unit, float] = field(default_factory=dict)
    metric: str = "uar"
    runs: dict[int, str] = field(default_factory=dict)
    digests: dict[int, str] = field(default_factory=dict)

    @property
    def seeds(self) -> list[int]:
        """The seeds with scores, ascending."""
        return sorted({s for s, _ in self.uar})


@dataclass(frozen=True)
class Comparison:
    """Row ``a`` against row ``b`` on their shared units (differences ``a - b``)."""

    a: str
    b: str
    result: PairedResult
    units: tuple[Unit, ...]
    metric: str = "uar"


def compare_pair(
    a: str, b: str, sa: RowScores, sb: RowScores, test: str = "wilcoxon", metric: str = "uar"
) -> Comparison:
    """Pair the units rows ``a`` and ``b`` share and test them.

    Args:
        a: Name of the first row.
        b: Name of the second row.
        sa: Scores of ``a``.
        sb: Scores of ``b``.
        test: A :data:`paraling.scoring.paired.TESTS` name.
        metric: ``uar`` (k classes) or ``uar2`` (2 classes).

    Raises:
        EnsembleError: The rows share no (seed, fold) unit, or a seed's folds differ between them.
    """
    for seed in set(sa.digests) & set(sb.digests):
        if sa.digests[seed] != sb.digests[seed]:
            raise EnsembleError(
                f"{a} and {b} (seed {seed}) were not cross-validated on the same speaker folds (their "
                "paraling.fold_digest tags differ); run both on the same corpus with the same cv settings"
            )
    va, vb = getattr(sa, metric), getattr(sb, metric)
    units = tuple(sorted(set(va) & set(vb)))
    if not units:
        raise EnsembleError(
            f"{a} and {b} share no (seed, fold): {a} has seeds {sa.seeds}, {b} has seeds {sb.seeds}; "
            "run both with the same seeds"
        )
    result = paired_test([va[u] for u in units], [vb[u] for u in units], test)
    return Comparison(a, b, result, units, sa.metric if metric == "uar" else metric)


def compare_rows(
    scores: Mapping[str, RowScores],
    fold_means: Mapping[str, float],
    pairs: Sequence[tuple[str, str]] = (),
    members: Sequence[str] = (),
    test: str = "wilcoxon",
) -> list[Comparison]:
    """The comparisons of ``pairs`` whose rows both exist (others are left out).

    Args:
        scores: Per-row scores.
        fold_means: Per-row fold-mean UAR (picks the best member).
        pairs: ``(a, b)`` row names; :data:`BEST_MEMBER` as ``b`` is the best of ``members`` in the table.
        members: The ensemble's members.
        test: A :data:`paraling.scoring.paired.TESTS` name.
    """
    out = []
    for a, b in pairs:
        if b == BEST_MEMBER:
            present = [m for m in members if m in scores]
            if not present:
                continue
            b = max(present, key=lambda m: fold_means[m])
        if a in scores and b in scores:
            out.append(compare_pair(a, b, scores[a], scores[b], test))
    return out
