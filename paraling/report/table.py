"""Comparison tables of tracked experiments (Table 1 of Milde & Biemann 2015), over seeds, with paired tests.

:func:`build_report` reads the finished runs of one MLflow experiment (pre-training runs, tag
``paraling.role=pretrain``, and ensemble runs are skipped), keeps the newest run per name (``paraling.name``, the
``name`` of the config: ``net0`` ... ``net5``) *and seed* (tag ``paraling.seed``; ``-m seed=0,1,2`` trains each row
once per seed), and computes every number from each run's out-of-fold scores (``oof/scores.npz``), so CNN runs,
baselines and ensembles are scored the same way:

- ``uar``: UAR over all cross-validated utterances (k classes), averaged over seeds; ``uar_mean`` +/- ``uar_std``
  over the (seed, fold) units;
- ``uar2``/``uar2_mean``/``uar2_std``: the same after collapsing the classes to ``negative_class`` (the runs'
  ``corpus.negative_class``, ``No_Food`` on the eating corpora) versus all others, when that class exists.

With ``ensemble`` (``net0, net2, net3, net5`` in ``conf/report/table1.yaml``, the paper's choice) it adds a row
that combines, seed by seed, those runs' out-of-fold probabilities with :func:`paraling.ensemble.combine`
(``harmonic`` mean by default). No member weights are fitted, so this row is as honest as its members. When the
experiment holds a logged ensemble run of exactly a seed's member runs with that combiner and equal weights
(``paraling ensemble --names net0 net2 net3 net5 --method all --combiner harmonic``;
:func:`paraling.tracking.runs.find_ensemble_run`), that seed's row is scored from the logged run's
``oof/scores.npz``; both give the same numbers.

Rows are then compared pairwise on their shared (seed, fold) units (:mod:`paraling.report.comparisons`), and the
CNN rows' learning curves are read back (:mod:`paraling.report.curves`). :mod:`paraling.report.render`
writes it all out.

Example:
    >>> report = build_report("table1")  # doctest: +SKIP
    >>> print(render_markdown(report.rows))  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import re
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from paraling.ensemble import combine, stack_oof
from paraling.errors import EnsembleError
from paraling.report.comparisons import Comparison, RowScores, compare_rows
from paraling.report.curves import Curve, read_curves
from paraling.report.paper import row_key
from paraling.report.spec import AUTO, resolve_negative_class
from paraling.report.vote_rows import load_vote, vote_row_sources
from paraling.scoring.metrics import accuracy, binary_uar, fold_summary, macro_f1, uar
from paraling.scoring.oof import OOFScores

if TYPE_CHECKING:
    from paraling.tracking.runs import TrackedRun

__all__ = [
    "SEED_TAG",
    "Report",
    "Row",
    "build_report",
    "build_table",
    "group_by_seed",
    "score_row",
    "score_runs",
    "score_seeds",
]

log = logging.getLogger(__name__)

SEED_TAG = "paraling.seed"
"""The tag holding a run's seed (runs without it count as seed 0)."""


@dataclass
class Row:
    """One line of the table (UARs in [0, 1]; ``nan`` where not applicable)."""

    name: str
    description: str
    model_type: str
    run_id: str
    n_classes: int
    uar: float
    uar_mean: float
    uar_std: float
    uar2: float = float("nan")
    uar2_mean: float = float("nan")
    uar2_std: float = float("nan")
    n_seeds: int = 1
    labels: str = ""  # the class names, comma-separated
    wa: float = float("nan")  # weighted accuracy (= accuracy), pooled, mean over seeds
    macro_f1: float = float("nan")


@dataclass
class Report:
    """Everything ``paraling report`` prints: rows, their per-unit scores, paired tests and learning curves."""

    rows: list[Row]
    scores: dict[str, RowScores] = field(default_factory=dict)
    comparisons: list[Comparison] = field(default_factory=list)
    curves: list[Curve] = field(default_factory=list)


def _natural(name: str) -> list[object]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def _order(name: str) -> tuple[int, list[object]]:
    """The paper's rows in its order (:data:`~paraling.report.paper.ROW_ORDER`), then the others naturally."""
    rank, _ = row_key(name)
    return rank, _natural(name)


def _seed_of(run: TrackedRun) -> int:
    try:
        return int(run.tags.get(SEED_TAG, "0"))
    except ValueError:
        return 0


def group_by_seed(runs: Sequence[TrackedRun], seeds: Sequence[int] | None = None) -> dict[str, dict[int, TrackedRun]]:
    """The newest run per name and seed among ``runs`` (oldest first, as :func:`~paraling.tracking.runs.find_runs`
    lists them), optionally only ``seeds``; names left without a run are dropped."""
    out: dict[str, dict[int, TrackedRun]] = {}
    for r in runs:
        seed = _seed_of(r)
        if seeds is None or seed in seeds:
            out.setdefault(r.config_name, {})[seed] = r
    return out


#: What ``paraling report --metric`` can sort and test by: the headline UAR and what emotion papers report beside
#: it (weighted accuracy, i.e. accuracy, and macro-F1).
REPORT_METRICS: dict[str, Any] = {"uar": uar, "wa": accuracy, "macro_f1": macro_f1}


def score_seeds(
    name: str,
    oofs: Mapping[int, OOFScores],
    negative_class: str | None = None,
    description: str = "",
    model_type: str = "",
    run_id: str = "",
    metric: str = "uar",
) -> tuple[Row, RowScores]:
    """Score one row's out-of-fold probabilities, one :class:`OOFScores` per seed (``fold < 0``: ignored).

    Returns:
        The row (pooled UAR, WA and macro-F1 averaged over seeds, UAR mean +/- std over the (seed, fold) units) and
        its per-unit scores of ``metric`` (one of :data:`REPORT_METRICS`: what the paired tests compare).
    """
    scores = RowScores(metric=metric)
    score = REPORT_METRICS[metric]
    pooled, pooled2, wa, f1 = [], [], [], []
    per_unit_uar: dict[tuple[int, int], float] = {}
    n = 0
    for seed, oof in sorted(oofs.items()):
        keep = oof.fold >= 0
        if not keep.any():
            raise EnsembleError(f"{name} (seed {seed}): no utterance was scored out of fold")
        y, pred, fold = oof.y[keep], oof.proba[keep].argmax(1), oof.fold[keep]
        n = len(oof.classes)
        pooled.append(uar(y, pred, n))
        wa.append(accuracy(y, pred, n))
        f1.append(macro_f1(y, pred, n))
        for k in np.unique(fold):
            unit, yk, pk = (seed, int(k)), y[fold == k], pred[fold == k]
            per_unit_uar[unit] = uar(yk, pk, n)
            scores.uar[unit] = per_unit_uar[unit] if metric == "uar" else score(yk, pk, n)
        classes = [str(c) for c in oof.classes]
        if negative_class is not None and negative_class in classes:
            neg = classes.index(negative_class)
            pooled2.append(binary_uar(y, pred, neg))
            for k in np.unique(fold):
                scores.uar2[(seed, int(k))] = binary_uar(y[fold == k], pred[fold == k], neg)
    per = fold_summary(list(per_unit_uar.values()))
    row = Row(name, description, model_type, run_id, n, float(np.mean(pooled)), per["mean"], per["std"])
    row.wa, row.macro_f1 = float(np.mean(wa)), float(np.mean(f1))
    row.n_seeds = len(oofs)
    row.labels = ",".join(classes)
    if pooled2:
        per2 = fold_summary(list(scores.uar2.values()))
        row.uar2, row.uar2_mean, row.uar2_std = float(np.mean(pooled2)), per2["mean"], per2["std"]
    return row, scores


def score_row(
    name: str,
    oof: OOFScores,
    negative_class: str | None = None,
    description: str = "",
    model_type: str = "",
    run_id: str = "",
) -> Row:
    """Score one run's (or ensemble's) out-of-fold probabilities; utterances with ``fold < 0`` are ignored."""
    return score_seeds(name, {0: oof}, negative_class, description, model_type, run_id)[0]


def score_runs(
    name: str,
    runs: Mapping[int, TrackedRun],
    oofs: Mapping[int, OOFScores],
    negative_class: str | None = None,
    metric: str = "uar",
) -> tuple[Row, RowScores]:
    """:func:`score_seeds` for tracked runs (seed -> run, seed -> its scores): description and kind from the newest
    run, and the per-seed run ids and fold digests that the paired tests check."""
    newest = max(runs.values(), key=lambda r: (r.start_time, r.run_id))
    run_id = newest.run_id if len(runs) == 1 else f"{len(runs)} runs"
    description = newest.tags.get("paraling.description", "")
    row, sc = score_seeds(name, oofs, negative_class, description, newest.kind, run_id, metric)
    sc.runs = {s: r.run_id for s, r in runs.items()}
    sc.digests = {s: d for s, r in runs.items() if (d := r.tags.get("paraling.fold_digest"))}
    return row, sc


def build_report(
    experiment: str,
    uri: str | None = None,
    ensemble: Sequence[str] | None = None,
    combiner: str = "harmonic",
    negative_class: str | None = AUTO,
    names: Sequence[str] | None = None,
    *,
    seeds: Sequence[int] | None = None,
    pairs: Sequence[tuple[str, str]] = (),
    vote_rows: Mapping[str, tuple[str, str]] | None = None,
    test: str = "wilcoxon",
    curves: bool = True,
    metric: str = "uar",
    sort: bool = False,
) -> Report:
    """Rows for the newest finished run of each name and seed in ``experiment``, the ensemble row, paired tests.

    A report file sets the study's choices (``load_report_spec("table1").as_kwargs()``: the paper's ensemble,
    pairs and vote rows; :mod:`paraling.report.spec`).

    Args:
        experiment: MLflow experiment name (``table1`` for ``experiment=net0 ... net5``).
        uri: Tracking URI (default: ``$MLFLOW_TRACKING_URI`` or ``sqlite:///mlruns/mlflow.db``).
        ensemble: Names of the runs to combine (``None`` or empty: no ensemble row). Missing members are reported
            in the log and the row is left out.
        combiner: A :data:`paraling.ensemble.COMBINERS` name (the paper: ``harmonic``).
        negative_class: Class that forms the "no" side of the 2-class UAR: ``auto`` (the runs' own
            ``corpus.negative_class``), a class name, or ``None`` (no 2-class columns).
        names: Only these run names (default: all).
        seeds: Only runs of these seeds (default: every seed found).
        pairs: Rows to compare (``(a, b)``: is ``a`` better?); pairs with a missing row are left out.
        vote_rows: ``row -> (source row, vote)``: rows without runs scored from another row's runs.
        test: The paired test (``wilcoxon`` | ``permutation``).
        curves: Also read the learning curves of the runs (one metric history per fold and run).
        metric: What the paired tests compare per (seed, fold) unit: ``uar``, ``wa`` or ``macro_f1``.
        sort: Order the rows by ``metric``, best first (default: the paper's rows in its order, then by name).

    Raises:
        EnsembleError: No finished runs in the experiment, ensemble members that are not aligned, or compared rows
            on different folds.
        ConfigError: ``negative_class="auto"`` and the runs name different negative classes.
    """
    from paraling.tracking.runs import find_runs, make_client

    client = make_client(uri)
    groups = group_by_seed(find_runs(experiment, uri=uri, check_model=False, client=client), seeds)
    derived = vote_row_sources(list(groups), vote_rows or {}, names)
    chosen = sorted((n for n in groups if names is None or n in names), key=_order)
    if not chosen and not derived:
        raise EnsembleError(
            f"no finished runs named {list(names or [])}"
            + (f" with seeds {list(seeds)}" if seeds is not None else "")
            + f" in experiment {experiment!r}"
        )
    negative = resolve_negative_class(negative_class, [r.tags for g in groups.values() for r in g.values()])
    oofs = _load_oofs(groups, [*chosen, *(src for src, _ in derived.values() if src not in chosen)], derived, client)
    chosen = sorted([*chosen, *derived], key=_order)
    report = Report(rows=[])
    for n in chosen:
        row, sc = score_runs(n, groups[n], oofs[n], negative, metric)
        if n in derived:
            src, vote = derived[n]
            row.description = f"{src}'s networks, {vote} vote (the same training; no {n} runs of its own)"
        report.rows.append(row)
        report.scores[n] = sc
    members = list(ensemble or [])
    _add_ensemble_row(report, experiment, members, groups, oofs, derived, combiner, negative, client, metric)
    if sort:
        report.rows.sort(key=lambda r: -float(getattr(r, metric)))
    means = {r.name: float(np.mean(list(report.scores[r.name].uar.values()))) for r in report.rows}
    report.comparisons = compare_rows(report.scores, means, pairs, members, test)
    if curves:
        report.curves = read_curves(client, {n: groups[n] for n in chosen if n not in derived})
    return report


def _load_oofs(
    groups: dict[str, dict[int, TrackedRun]], needed: Sequence[str], derived: Mapping[str, tuple[str, str]], client: Any
) -> dict[str, dict[int, OOFScores]]:
    """Every needed row's out-of-fold scores per seed, and the vote rows' (``groups`` gains their runs)."""
    from paraling.tracking.runs import load_scores

    flat = [(n, s, groups[n][s]) for n in needed for s in sorted(groups[n])]
    oofs: dict[str, dict[int, OOFScores]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        loaded = load_scores([r for _, _, r in flat], tmp, client=client)
        for (n, s, _), oof in zip(flat, loaded, strict=True):
            oofs.setdefault(n, {})[s] = oof
        for name, (src, vote) in derived.items():
            oofs[name] = {s: load_vote(o, groups[src][s].run_id, vote, tmp, client) for s, o in oofs[src].items()}
            groups[name] = groups[src]
    return oofs


def _add_ensemble_row(
    report: Report,
    experiment: str,
    members: Sequence[str],
    groups: Mapping[str, Mapping[int, TrackedRun]],
    oofs: Mapping[str, Mapping[int, OOFScores]],
    derived: Mapping[str, tuple[str, str]],
    combiner: str,
    negative_class: str | None,
    client: Any,
    metric: str = "uar",
) -> None:
    """Append the ensemble row of ``members`` (left out, with a warning, when one has no finished run)."""
    twice = sorted({derived[m][0] for m in members if m in derived} & set(members))
    if twice:
        log.warning("the ensemble holds %s's networks twice (%s under another vote)", twice, sorted(derived))
    missing = [m for m in members if m not in oofs]
    if members and missing:
        log.warning("ensemble row left out: no finished run named %s in %r", missing, experiment)
        return
    if not members:
        return
    row, sc = _ensemble_row(experiment, {m: groups[m] for m in members}, oofs, combiner, negative_class, client, metric)
    if row is not None:
        if twice:
            row.description += f"; {', '.join(d for d in derived if d in members)}: {twice[0]}'s networks again"
        report.rows.append(row)
        report.scores["ensemble"] = sc


def build_table(
    experiment: str,
    uri: str | None = None,
    ensemble: Sequence[str] | None = None,
    combiner: str = "harmonic",
    negative_class: str | None = AUTO,
    names: Sequence[str] | None = None,
    *,
    pairs: Sequence[tuple[str, str]] = (),
    vote_rows: Mapping[str, tuple[str, str]] | None = None,
) -> list[Row]:
    """The rows of :func:`build_report` (``pairs`` are accepted and ignored: rows need no paired tests)."""
    del pairs
    return build_report(
        experiment, uri, ensemble, combiner, negative_class, names, vote_rows=vote_rows, curves=False
    ).rows


def _ensemble_row(
    experiment: str,
    runs: Mapping[str, Mapping[int, TrackedRun]],
    oofs: Mapping[str, Mapping[int, OOFScores]],
    combiner: str,
    negative_class: str | None,
    client: Any,
    metric: str = "uar",
) -> tuple[Row | None, RowScores]:
    """The ensemble row over the seeds every member has: per seed, a logged ensemble run of exactly those member
    runs when there is one, else the members combined here."""
    from paraling.tracking.runs import find_ensemble_run, load_scores

    names = list(runs)
    seeds = sorted(set.intersection(*(set(runs[m]) for m in names)))
    if not seeds:
        log.warning("ensemble row left out: its members %s share no seed", names)
        return None, RowScores()
    combined: dict[int, OOFScores] = {}
    logged_ids: dict[int, str] = {}
    for seed in seeds:
        S, y, fold = stack_oof([oofs[m][seed] for m in names], names)  # members must be aligned either way
        logged = find_ensemble_run(experiment, [runs[m][seed].run_id for m in names], combiner, client=client)
        if logged is not None:
            with tempfile.TemporaryDirectory() as tmp:
                (combined[seed],) = load_scores([logged], tmp, client=client)
            logged_ids[seed] = logged.run_id
            continue
        ref = oofs[names[0]][seed].sorted()
        combined[seed] = OOFScores(
            ref.utt_ids, ref.classes, y, fold, ref.split, ref.speaker, combine(S, method=combiner).astype(np.float32)
        )
    description = f"{' + '.join(names)} ({combiner} mean)"
    if len(seeds) == 1 and logged_ids:
        description += f", MLflow run {logged_ids[seeds[0]][:8]}"
    run_id = logged_ids[seeds[0]] if len(seeds) == 1 and logged_ids else ""
    row, sc = score_seeds("ensemble", combined, negative_class, description, "ensemble", run_id, metric)
    sc.runs = logged_ids
    first = runs[names[0]]
    sc.digests = {s: d for s in seeds if (d := first[s].tags.get("paraling.fold_digest"))}
    return row, sc
