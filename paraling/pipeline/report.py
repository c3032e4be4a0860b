"""Comparison tables of tracked experiments (Table 1 of Milde & Biemann 2015 as Markdown, CSV and a bar chart).

:func:`build_table` reads the finished runs of one MLflow experiment (pre-training runs, tag
``paraling.role=pretrain``, and ensemble runs are skipped), keeps the newest run per name (``paraling.name``, the
``name`` of the config: ``net0`` ... ``net5``), and computes every number from each run's out-of-fold scores
(``oof/scores.npz``), so CNN runs, baselines and ensembles are scored the same way:

- ``uar``: UAR over all cross-validated utterances (k classes), ``uar_mean`` +/- ``uar_std`` over folds;
- ``uar2``/``uar2_mean``/``uar2_std``: the same after collapsing the classes to ``negative_class`` (``No_Food``)
  versus all others (food / no food), when that class exists.

With ``ensemble`` (default ``net0, net2, net3, net5``, the paper's choice) it adds a row that combines those runs'
out-of-fold probabilities with :func:`paraling.ensemble.combine` (``harmonic`` mean by default). No member weights
are fitted, so this row is as honest as its members. When the experiment holds a logged ensemble run of exactly
those member runs with that combiner and equal weights (``paraling ensemble --names net0 net2 net3 net5 --method all
--combiner harmonic``; :func:`paraling.tracking.runs.find_ensemble_run`), the row is scored from that run's
``oof/scores.npz`` and carries its run id; otherwise the members are combined here. Both give the same numbers.
:func:`write_report` renders ``table.md``, ``table.csv`` and ``uar.png``.

Example:
    >>> rows = build_table("table1")  # doctest: +SKIP
    >>> print(render_markdown(rows))  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import logging
import re
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from paraling.ensemble import combine, stack_oof
from paraling.errors import EnsembleError
from paraling.scoring.metrics import binary_uar, fold_summary, uar
from paraling.scoring.oof import OOFScores

if TYPE_CHECKING:
    from paraling.tracking.runs import TrackedRun

__all__ = ["DEFAULT_ENSEMBLE", "Row", "build_table", "plot_bars", "render_markdown", "score_row", "write_report"]

log = logging.getLogger(__name__)

DEFAULT_ENSEMBLE: tuple[str, ...] = ("net0", "net2", "net3", "net5")
"""The members of the paper's ensemble (combined by the harmonic mean of class probabilities)."""


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


def _natural(name: str) -> list[object]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def score_row(
    name: str,
    oof: OOFScores,
    negative_class: str | None = "No_Food",
    description: str = "",
    model_type: str = "",
    run_id: str = "",
) -> Row:
    """Score one run's (or ensemble's) out-of-fold probabilities; utterances with ``fold < 0`` are ignored."""
    keep = oof.fold >= 0
    if not keep.any():
        raise EnsembleError(f"{name}: no utterance was scored out of fold")
    y, pred, fold = oof.y[keep], oof.proba[keep].argmax(1), oof.fold[keep]
    n = len(oof.classes)
    folds = np.unique(fold)
    per = fold_summary([uar(y[fold == k], pred[fold == k], n) for k in folds])
    row = Row(name, description, model_type, run_id, n, uar(y, pred, n), per["mean"], per["std"])
    classes = [str(c) for c in oof.classes]
    if negative_class is not None and negative_class in classes:
        neg = classes.index(negative_class)
        per2 = fold_summary([binary_uar(y[fold == k], pred[fold == k], neg) for k in folds])
        row.uar2, row.uar2_mean, row.uar2_std = binary_uar(y, pred, neg), per2["mean"], per2["std"]
    return row


def build_table(
    experiment: str,
    uri: str | None = None,
    ensemble: Sequence[str] | None = DEFAULT_ENSEMBLE,
    combiner: str = "harmonic",
    negative_class: str | None = "No_Food",
    names: Sequence[str] | None = None,
) -> list[Row]:
    """Rows for the newest finished run of each name in ``experiment``, plus the ensemble row.

    Args:
        experiment: MLflow experiment name (``table1`` for ``experiment=net0 ... net5``).
        uri: Tracking URI (default: ``$MLFLOW_TRACKING_URI`` or ``sqlite:///mlruns/mlflow.db``).
        ensemble: Names of the runs to combine (``None`` or empty: no ensemble row). Missing members are reported
            in the log and the row is left out. A logged ensemble run of exactly these runs (see the module
            docstring) supplies the row and its run id.
        combiner: A :data:`paraling.ensemble.COMBINERS` name (the paper: ``harmonic``).
        negative_class: Class that forms the "no" side of the 2-class UAR (``None``: no 2-class columns).
        names: Only these run names (default: all).

    Raises:
        EnsembleError: No finished runs in the experiment, or ensemble members that are not aligned.
    """
    from paraling.tracking.runs import find_runs, load_scores, make_client, newest_by_name

    client = make_client(uri)
    latest = newest_by_name(find_runs(experiment, uri=uri, check_model=False, client=client))
    chosen = sorted((n for n in latest if names is None or n in names), key=_natural)
    if not chosen:
        raise EnsembleError(f"no finished runs named {list(names or [])} in experiment {experiment!r}")
    with tempfile.TemporaryDirectory() as tmp:
        scores = dict(zip(chosen, load_scores([latest[n] for n in chosen], tmp, client=client), strict=True))
    rows = [
        score_row(
            n,
            scores[n],
            negative_class,
            latest[n].tags.get("paraling.description", ""),
            latest[n].kind,
            latest[n].run_id,
        )
        for n in chosen
    ]
    members = list(ensemble or [])
    missing = [m for m in members if m not in scores]
    if members and missing:
        log.warning("ensemble row left out: no finished run named %s in %r", missing, experiment)
    elif members:
        rows.append(
            _ensemble_row(
                experiment, [latest[m] for m in members], [scores[m] for m in members], combiner, negative_class, client
            )
        )
    return rows


def _ensemble_row(
    experiment: str,
    runs: Sequence[TrackedRun],
    scores: Sequence[OOFScores],
    combiner: str,
    negative_class: str | None,
    client: Any,
) -> Row:
    """The ensemble row: from a logged ensemble run of exactly ``runs`` when there is one, else combined here."""
    from paraling.tracking.runs import find_ensemble_run, load_scores

    names = [r.config_name for r in runs]
    S, y, fold = stack_oof(scores, names)  # members must be aligned either way
    description = f"{' + '.join(names)} ({combiner} mean)"
    logged = find_ensemble_run(experiment, [r.run_id for r in runs], combiner, client=client)
    if logged is not None:
        with tempfile.TemporaryDirectory() as tmp:
            (combined,) = load_scores([logged], tmp, client=client)
        description += f", MLflow run {logged.run_id[:8]}"
        return score_row("ensemble", combined, negative_class, description, "ensemble", logged.run_id)
    ref = scores[0].sorted()
    combined = OOFScores(
        ref.utt_ids, ref.classes, y, fold, ref.split, ref.speaker, combine(S, method=combiner).astype(np.float32)
    )
    return score_row("ensemble", combined, negative_class, description, "ensemble", "")


def _pct(value: float, std: float | None = None) -> str:
    if value != value:
        return "n/a"
    return f"{100 * value:.1f}" if std is None else f"{100 * value:.1f} ± {100 * std:.1f}"


def render_markdown(rows: Sequence[Row]) -> str:
    """The table as GitHub Markdown (UAR in %, mean ± std over folds)."""
    k = rows[0].n_classes if rows else 0
    lines = [
        f"| row | what | model | UAR {k}-class | {k}-class fold mean ± std | UAR 2-class | 2-class fold mean ± std |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.name} | {r.description} | {r.model_type} | {_pct(r.uar)} | {_pct(r.uar_mean, r.uar_std)} "
            f"| {_pct(r.uar2)} | {_pct(r.uar2_mean, r.uar2_std)} |"
        )
    return "\n".join(lines) + "\n"


def write_csv(rows: Sequence[Row], path: str | Path) -> Path:
    """The rows as CSV (UAR as fractions in [0, 1])."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(Row.__dataclass_fields__))
        w.writeheader()
        for r in rows:
            w.writerow(asdict(r))
    return path


def plot_bars(rows: Sequence[Row], path: str | Path, title: str = "") -> Path:
    """Bar chart of the fold-mean UAR (error bars: std over folds), k-class and 2-class side by side."""
    from paraling.tracking.plots import plt, save_figure  # pyplot on the Agg backend

    x = np.arange(len(rows))
    two = any(r.uar2_mean == r.uar2_mean for r in rows)
    w = 0.4 if two else 0.6
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(rows) + 3.5), 4))
    k = rows[0].n_classes if rows else 0
    ax.bar(
        x - (w / 2 if two else 0),
        [100 * r.uar_mean for r in rows],
        w,
        yerr=[100 * r.uar_std for r in rows],
        capsize=3,
        label=f"{k}-class UAR",
    )
    if two:
        ax.bar(
            x + w / 2,
            [100 * np.nan_to_num(r.uar2_mean) for r in rows],
            w,
            yerr=[100 * np.nan_to_num(r.uar2_std) for r in rows],
            capsize=3,
            label="2-class UAR",
        )
    if k:
        ax.axhline(100 / k, color="grey", lw=0.8, ls="--", label=f"chance ({k} classes)")
    ax.set_xticks(x, [r.name for r in rows])
    ax.set_ylabel("UAR (%), mean ± std over folds")
    ax.set_ylim(0, 100)
    ax.set_title(title)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path, dpi=120)


def write_report(rows: Sequence[Row], out_dir: str | Path, title: str = "") -> dict[str, Path]:
    """Write ``table.md``, ``table.csv`` and ``uar.png`` into ``out_dir``; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    md = out / "table.md"
    md.write_text((f"# {title}\n\n" if title else "") + render_markdown(rows), encoding="utf-8")
    return {"markdown": md, "csv": write_csv(rows, out / "table.csv"), "png": plot_bars(rows, out / "uar.png", title)}
