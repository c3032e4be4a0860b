"""The one-screen summary printed at the end of ``paraling train``."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig

from paraling.scoring.aggregation import METHODS
from paraling.secrets import mask_secrets

if TYPE_CHECKING:
    from paraling.pipeline.results import RunResult

__all__ = ["print_summary"]


def print_summary(result: RunResult, cfg: DictConfig, stream: Any = None) -> None:
    """A one-screen summary: UAR per fold, overall, run id and how to open the MLflow UI."""
    stream = stream or sys.stdout
    m = result.metrics
    lines = [
        "",
        f"paraling: {cfg.name} on corpus {cfg.corpus.name} ({len(result.oof.utt_ids)} utterances, "
        f"{len(result.oof.classes)} classes, chance UAR {1 / len(result.oof.classes):.3f})",
    ]
    for k, v in sorted(result.fold_uars.items()):
        lines.append(f"  fold {k}: UAR {v:.3f}")
    from paraling.models.registry import model_level

    window = model_level(str(cfg.model.kind)) == "window"
    vote = f"{cfg.model.kind}, {cfg.aggregation.kind} vote" if window else f"{cfg.model.kind} baseline"
    lines.append(
        f"  out-of-fold UAR ({vote}): {m['uar']:.3f}  "
        f"[95% CI {m['uar_ci_low']:.3f}-{m['uar_ci_high']:.3f}]  fold mean {m['uar_fold_mean']:.3f} "
        f"+/- {m['uar_fold_std']:.3f}"
    )
    if all(f"uar_{a}" in m for a in METHODS):  # CNN runs only
        lines.append("  by aggregation: " + ", ".join(f"{a} {m[f'uar_{a}']:.3f}" for a in METHODS))
    if "uar_binary" in m:
        neg = cfg.corpus.negative_class
        lines.append(f"  2-class (the rest vs {neg}) UAR: {m['uar_binary']:.3f}")
    lines.append(f"  time: {result.seconds:.0f} s")
    if result.run_id:
        from paraling.tracking.tracker import resolve_tracking_uri
        from paraling.tracking.ui import open_line, run_link

        uri = resolve_tracking_uri(cfg.tracking.uri)
        lines.append(f"  MLflow run: {result.run_id}")
        lines.append("  " + open_line(uri, run_link(uri, result.run_id)))
    print(mask_secrets("\n".join(lines)), file=stream)
