"""The published numbers that ``paraling report`` prints next to the measured rows (Milde & Biemann, 2015).

:data:`TABLE1`: their Table 1, 5-fold speaker-independent cross-validation on the iHEARu-EAT training data, UAR in %
(mean, std over folds), 7-class and 2-class, by the name of the paraling row that reproduces it
(``conf/experiment/<name>.yaml``; the ensemble row of ``paraling report``). :data:`TABLE2`: their Table 2, the
official test set, quoted under the table.
"""

from __future__ import annotations

from paraling.data.recipes.demo import LABELS

__all__ = ["LABELS", "ROW_ORDER", "TABLE1", "TABLE2", "is_eating_task", "row_key"]

TABLE1: dict[str, tuple[tuple[float, float], tuple[float, float]]] = {
    "svm": ((56.0, 2.7), (94.3, 2.3)),
    "rf": ((53.6, 2.9), (91.4, 4.3)),
    "net0": ((59.2, 4.2), (93.8, 3.6)),
    "net1": ((57.8, 3.6), (94.4, 1.8)),
    "net2": ((61.6, 6.1), (94.1, 2.8)),
    "net3": ((63.1, 1.4), (95.0, 2.2)),
    "net4": ((62.2, 3.6), (95.4, 2.2)),
    "net5": ((65.5, 2.2), (96.6, 1.4)),
    "ensemble": ((67.2, 2.6), (96.3, 2.0)),
}
"""Row name -> ((7-class mean, std), (2-class mean, std)), UAR in %."""

TABLE2 = (
    "Paper, Table 2 (official test set, each submission an ensemble including the previous ones): 8-layer CNN "
    "ensemble, 400 epochs, 70.0; + 10-layer CNN ensemble (60x18 windows, 3000 epochs) 73.6; + CNN with pitch "
    "augmentation 75.4; + logistic regression on CNN embeddings 75.9 (challenge baseline 65.9 on the test set, 61.3 "
    "leave-one-speaker-out on the training set)."
)

ROW_ORDER: tuple[str, ...] = tuple(TABLE1)
"""The paper's row order; other rows follow it."""


def is_eating_task(labels: str) -> bool:
    """Whether comma-separated class ``labels`` are the Eating Condition task's seven classes (:data:`LABELS`)."""
    return set(labels.split(",")) == set(LABELS)


def row_key(name: str) -> tuple[int, str]:
    """Sort key: the paper's rows in its order, then every other row by name."""
    return (ROW_ORDER.index(name), "") if name in ROW_ORDER else (len(ROW_ORDER), name)
