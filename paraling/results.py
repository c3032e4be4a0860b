"""What a tracked cross-validated run returns, whichever model it trained (CNN, utterance-level baseline)."""

from __future__ import annotations

from dataclasses import dataclass, field

from paraling.oof import OOFScores

__all__ = ["RunResult"]


@dataclass
class RunResult:
    """The outcome of :func:`paraling.experiment.run_experiment`; ``uar`` is the optimised metric.

    Attributes:
        uar: Out-of-fold UAR of the configured aggregation.
        metrics: Every logged summary metric.
        run_id: The MLflow run (``None`` with tracking off).
        oof: Out-of-fold scores of every scored utterance.
        fold_uars: UAR per fold.
        seconds: Wall time of the whole run.
        histories: Per fold, the per-epoch metrics of training (empty for baselines).
    """

    uar: float
    metrics: dict[str, float]
    run_id: str | None
    oof: OOFScores
    fold_uars: dict[int, float] = field(default_factory=dict)
    seconds: float = 0.0
    histories: dict[int, list[dict[str, float]]] = field(default_factory=dict)
