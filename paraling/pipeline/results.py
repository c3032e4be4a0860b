"""What a tracked cross-validated run returns, whichever model it trained (CNN, utterance-level baseline)."""

from __future__ import annotations

from dataclasses import dataclass, field

from paraling.scoring.oof import OOFScores

__all__ = ["RunResult", "negative_class_index"]


@dataclass
class RunResult:
    """The outcome of :func:`paraling.pipeline.experiment.run_experiment`; ``uar`` is the optimised metric.

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


def negative_class_index(cfg_corpus: object, classes: list[str]) -> int | None:
    """Index of ``corpus.negative_class`` among ``classes`` (``None`` when the key is unset).

    Raises:
        ConfigError: The key names a class the corpus does not have.
    """
    from paraling.errors import ConfigError

    name = getattr(cfg_corpus, "negative_class", None)
    if name is None:
        return None
    if name not in classes:
        raise ConfigError(
            f"corpus.negative_class={name!r} is not a class of this corpus (classes: {classes}); set it to one of "
            "them, or to null for no 2-class UAR"
        )
    return classes.index(name)
