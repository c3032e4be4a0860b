"""What :func:`~paraling.pipeline.cv.run_cv` asks of a model: the :class:`FoldRunner` contract and its data.

A runner prepares the corpus with its folds (:class:`CVData`), trains and scores one fold at a time
(:class:`FoldOutput`, with the test windows' posteriors in :class:`WindowScores` where the model has windows) and
logs its model once every fold is done.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from paraling.data.manifest import Manifest
from paraling.data.splits import FoldPlan
from paraling.tracking.tracker import RunTracker

__all__ = ["CVData", "FoldOutput", "FoldRunner", "WindowScores"]


@dataclass
class CVData:
    """The corpus a runner cross-validates, with its speaker folds assigned.

    Attributes:
        manifest: Every utterance (augmented copies included), each with its ``fold``.
        classes: Class names; ``y`` indexes them.
        y: Class id per utterance of ``manifest``.
        params: Extra ``data.*`` run parameters (sizes).
        tags: Runner-specific MLflow tags (``paraling.model_type``, the device, ...).
        metrics: What preparing the data did (``features_computed``: recordings extracted, not read from the cache).
    """

    manifest: Manifest
    classes: list[str]
    y: np.ndarray
    params: dict[str, Any] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class WindowScores:
    """Window posteriors of a fold's test utterances.

    Attributes:
        proba: ``(n_windows, n_classes)`` posteriors.
        utt: Position of each window's utterance in ``plan.test``.
        start: First frame of each window within its utterance.
    """

    proba: np.ndarray
    utt: np.ndarray
    start: np.ndarray


@dataclass
class FoldOutput:
    """What one fold produced.

    Attributes:
        scores: Per aggregation method, ``(len(plan.test), n_classes)`` utterance scores of the fold's test rows.
        metrics: Per-fold scalars to log (logged as ``fold<k>_<name>``).
        embeddings: ``(len(plan.test), dim)`` utterance embeddings, or ``None``.
        windows: Window posteriors, or ``None`` (utterance-level models).
        history: Per-epoch training metrics (empty for models without epochs).
        info: How the fold was trained, in words (``{"capture": "graph"}``): tagged on the run as
            ``paraling.training.<key>`` (the folds' distinct values) and listed in its description.
    """

    scores: dict[str, np.ndarray]
    metrics: dict[str, float] = field(default_factory=dict)
    embeddings: np.ndarray | None = None
    windows: WindowScores | None = None
    history: list[dict[str, float]] = field(default_factory=list)
    info: dict[str, str] = field(default_factory=dict)


class FoldRunner(Protocol):
    """One kind of model under :func:`run_cv`.

    Attributes:
        methods: The aggregation methods a fold's ``scores`` hold (``("utterance",)`` for utterance-level models);
            the run's headline is ``primary``.
        primary: The method whose scores are the run's out-of-fold scores.
        embedding_dim: Width of ``FoldOutput.embeddings`` (0: the runner has none).
    """

    methods: tuple[str, ...]
    primary: str
    embedding_dim: int

    def prepare(self) -> CVData:
        """Load the corpus (and whatever a fold needs) with its folds assigned."""
        ...

    def fit_fold(self, plan: FoldPlan, log_epoch: Callable[[int, dict[str, float]], None]) -> FoldOutput:
        """Train on ``plan.train`` and score ``plan.test``; ``log_epoch(epoch, metrics)`` tracks a curve."""
        ...

    def log_model(self, tracker: RunTracker, tmp: Path) -> None:
        """Log the trained model (or nothing) once every fold is done."""
        ...
