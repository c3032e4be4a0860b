"""Writing a report out: the table, the paired tests and the learning curves as Markdown, CSV and charts.

:func:`write_report` renders a :class:`~paraling.report.table.Report` (or bare rows) into ``table.md`` (the
table, then the paired tests and the learning-curve summary), ``table.csv``, ``tests.csv``, ``uar.png`` and
``curves.png``. Tests and curves are written only when there are some.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np

from paraling.report.comparisons import Comparison
from paraling.report.curves import CONVERGED_GAIN, Curve
from paraling.report.paper import TABLE1, TABLE2, is_eating_task
from paraling.report.table import Row

__all__ = [
    "plot_bars",
    "plot_learning_curves",
    "render_comparisons",
    "render_curves",
    "render_markdown",
    "render_report",
    "write_csv",
    "write_report",
    "write_tests_csv",
]


def _pct(value: float, std: float | None = None) -> str:
    if value != value:
        return "n/a"
    return f"{100 * value:.1f}" if std is None else f"{100 * value:.1f} ± {100 * std:.1f}"


def _paper(row: Row) -> tuple[str, str]:
    """The paper's 7-class and 2-class cells of ``row`` (empty when the paper has no such row or another task)."""
    if row.name not in TABLE1 or not is_eating_task(row.labels):
        return "", ""
    (m7, s7), (m2, s2) = TABLE1[row.name]
    return f"{m7:.1f} ± {s7:.1f}", f"{m2:.1f} ± {s2:.1f}"


def render_markdown(rows: Sequence[Row]) -> str:
    """The table as GitHub Markdown (UAR in %, mean ± std over the (seed, fold) units).

    On the Eating Condition task's classes, the paper's Table 1 (:data:`~paraling.report.paper.TABLE1`) fills
    two more columns for the rows that reproduce it.
    """
    k = rows[0].n_classes if rows else 0
    over = "seeds x folds" if any(r.n_seeds > 1 for r in rows) else "folds"
    paper = any(any(_paper(r)) for r in rows)
    head = ["row", "what", "model"] + (["paper, 7-class", "paper, 2-class"] if paper else [])
    head += [f"UAR {k}-class", f"{k}-class mean ± std over {over}", "UAR 2-class", f"2-class mean ± std over {over}"]
    head += ["WA", "macro-F1"]
    lines = ["| " + " | ".join([*head, "seeds"]) + " |", "|---|---|---|" + "---:|" * (len(head) - 2)]
    for r in rows:
        cells = [r.name, r.description, r.model_type, *(_paper(r) if paper else ())]
        cells += [_pct(r.uar), _pct(r.uar_mean, r.uar_std), _pct(r.uar2), _pct(r.uar2_mean, r.uar2_std)]
        cells += [_pct(r.wa), _pct(r.macro_f1)]
        lines.append("| " + " | ".join([*cells, str(r.n_seeds)]) + " |")
    if paper:
        lines += [
            "",
            "Paper: Milde & Biemann (2015), Table 1: 5-fold speaker-independent cross-validation on the iHEARu-EAT "
            "training data, UAR mean ± std over folds. " + TABLE2,
        ]
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


#: How the table and the tests name each metric.
METRIC_LABELS = {"uar": "UAR", "wa": "WA", "macro_f1": "macro-F1", "uar2": "2-class UAR"}


def _signed(value: float) -> str:
    return "n/a" if value != value else f"{100 * value:+.1f}"


def render_comparisons(comparisons: Sequence[Comparison]) -> str:
    """The paired tests as Markdown: mean paired difference with its 95% CI, wins/losses, p-value, verdict."""
    if not comparisons:
        return ""
    test = comparisons[0].result.test
    label = METRIC_LABELS.get(comparisons[0].metric, comparisons[0].metric)
    lines = [
        f"| a | vs b | units (seed x fold) | mean a - b ({label} points) | 95% CI | a wins / losses | p ({test}) "
        "| verdict |",
        "|---|---|---:|---:|---|---:|---:|---|",
    ]
    for c in comparisons:
        r = c.result
        verdict = {"a better": f"{c.a} better", "b better": f"{c.b} better"}.get(r.verdict, r.verdict)
        lines.append(
            f"| {c.a} | {c.b} | {r.n} | {_signed(r.mean_diff)} | [{_signed(r.ci_low)}, {_signed(r.ci_high)}] "
            f"| {r.wins} / {r.losses} | {r.p_value:.3g} | {verdict} |"
        )
    return "\n".join(lines) + "\n"


def render_curves(curves: Sequence[Curve]) -> str:
    """Per row: budget, epochs trained and selected epoch per (seed, fold), best mean validation UAR, convergence."""
    if not curves:
        return ""
    lines = [
        "| row | epoch budget | epochs trained (mean) | stopped early | selected epoch: median [min-max] "
        "| best val UAR (mean over units) | gain in the last quarter (units at the budget) | converged |",
        "|---|---:|---:|---:|---|---:|---:|---|",
    ]
    for c in curves:
        best = np.asarray(c.best) + 1
        gain = "n/a (none)" if not len(c.full) else _signed(c.late_gain)
        lines.append(
            f"| {c.name} | {c.budget or 'n/a'} | {np.mean(c.trained):.0f} | {c.stopped_early} / {len(c.trained)} "
            f"| {np.median(best):.0f} [{best.min()}-{best.max()}] | {_pct(float(np.mean(c.peak)))} | {gain} "
            f"| {'yes' if c.converged else f'no (gain >= {100 * CONVERGED_GAIN:.0f})'} |"
        )
    return "\n".join(lines) + "\n"


def plot_learning_curves(curves: Sequence[Curve], path: str | Path, title: str = "") -> Path:
    """Mean validation UAR per epoch (over seeds and folds), one line per row."""
    from paraling.tracking.plots import plt, save_figure  # pyplot on the Agg backend

    fig, ax = plt.subplots(figsize=(7, 4))
    for c in curves:
        ax.plot(np.arange(1, len(c.val_uar) + 1), 100 * c.val_uar, label=c.name)
    ax.set(xlabel="epoch", ylabel="validation UAR (%), held-out speakers", title=title or "learning curves")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path, dpi=120)


def write_tests_csv(comparisons: Sequence[Comparison], path: Path) -> Path:
    """The paired tests as CSV (differences as fractions)."""
    fields = ["a", "b", "metric", "test", "n", "mean_diff", "ci_low", "ci_high", "p_value", "wins", "losses"]
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        for c in comparisons:
            w.writerow({"a": c.a, "b": c.b, "metric": c.metric, **asdict(c.result)})
    return path


def render_report(
    rows: Sequence[Row], comparisons: Sequence[Comparison] = (), curves: Sequence[Curve] = (), title: str = ""
) -> str:
    """The whole report as one Markdown document."""
    parts = [f"# {title}\n" if title else "", render_markdown(rows)]
    if comparisons:
        parts += ["\n## Paired tests (same seeds and folds)\n", render_comparisons(comparisons)]
    if curves:
        parts += ["\n## Learning curves (validation UAR on held-out training speakers)\n", render_curves(curves)]
    return "\n".join(p for p in parts if p)


def write_report(
    rows: Sequence[Row],
    out_dir: str | Path,
    title: str = "",
    comparisons: Sequence[Comparison] = (),
    curves: Sequence[Curve] = (),
) -> dict[str, Path]:
    """Write ``table.md``, ``table.csv`` and ``uar.png`` (+ ``tests.csv``, ``curves.png``) into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    md = out / "table.md"
    md.write_text(render_report(rows, comparisons, curves, title), encoding="utf-8")
    paths = {"markdown": md, "csv": write_csv(rows, out / "table.csv"), "png": plot_bars(rows, out / "uar.png", title)}
    if comparisons:
        paths["tests"] = write_tests_csv(comparisons, out / "tests.csv")
    if curves:
        paths["curves"] = plot_learning_curves(curves, out / "curves.png", title)
    return paths
