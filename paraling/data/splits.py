"""Speaker-independent fold assignment: grouped (stratified) k-fold, leave-one-speaker-out, fixed split.

Folds are computed on *original* utterances; augmented copies inherit the fold of their source utterance and are
only ever used for training (see :func:`plan_folds`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import GroupKFold, StratifiedGroupKFold

from paraling.data.manifest import Manifest
from paraling.errors import CorpusError

__all__ = ["FoldPlan", "assign_folds", "plan_folds", "split_validation_speakers"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FoldPlan:
    """Row indices (into the manifest) of one fold: what to train on and what to score."""

    fold: int
    train: np.ndarray
    test: np.ndarray


def assign_folds(
    manifest: Manifest, scheme: str = "kfold", n_folds: int = 5, stratify: bool = True, seed: int = 0
) -> dict[str, int]:
    """Return ``{utterance id: fold}`` for the original (non-augmented) utterances.

    ``kfold``: speakers are partitioned into ``n_folds`` groups (stratified by label when possible, shuffled with
    ``seed``); ``loso``: one fold per speaker; ``split``: utterances whose ``split`` is ``test`` form fold 0 and all
    others are training-only (fold -1).

    Raises:
        CorpusError: Fewer speakers than folds, or no test utterances for ``split``.
    """
    utts = [u for u in manifest if u.augmented_from is None]
    ids = np.array([u.id for u in utts])
    speakers = np.array([u.speaker for u in utts])
    labels = np.array([u.label for u in utts])
    n_spk = len(set(speakers.tolist()))
    if scheme == "split":
        test = np.array([(u.split or "").lower() == "test" for u in utts])
        if not test.any():
            raise CorpusError(
                f"{manifest.source}: cv.scheme=split needs utterances with split=test (a 'split' column); "
                "add one or use cv.scheme=kfold"
            )
        overlap = set(speakers[test].tolist()) & set(speakers[~test].tolist())
        if overlap:
            log.warning(
                "%s: %d speaker(s) appear in both train and test (e.g. %s): results are not speaker-independent",
                manifest.source,
                len(overlap),
                sorted(overlap)[:3],
            )
        return {i: (0 if t else -1) for i, t in zip(ids.tolist(), test.tolist(), strict=True)}
    if scheme == "loso":
        order = sorted(set(speakers.tolist()))
        if len(order) < 2:
            raise CorpusError(f"{manifest.source}: leave-one-speaker-out needs >= 2 speakers, found {len(order)}")
        index = {s: k for k, s in enumerate(order)}
        return {i: index[s] for i, s in zip(ids.tolist(), speakers.tolist(), strict=True)}
    if n_spk < n_folds:
        raise CorpusError(
            f"{manifest.source}: {n_spk} speaker(s) but cv.folds={n_folds}; speaker-independent folds need at "
            f"least as many speakers as folds: lower cv.folds (e.g. cv.folds={max(2, n_spk)}) or use cv.scheme=loso"
        )
    x = np.zeros(len(ids))
    if stratify:
        splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
        parts = splitter.split(x, labels, groups=speakers)
    else:
        rng = np.random.default_rng(seed)
        perm_spk = rng.permutation(sorted(set(speakers.tolist())))
        rank = {s: k for k, s in enumerate(perm_spk)}
        parts = GroupKFold(n_splits=n_folds).split(x, labels, groups=[rank[s] for s in speakers])
    folds = np.full(len(ids), -1, dtype=np.int64)
    for k, (_, test_idx) in enumerate(parts):
        folds[test_idx] = k
    return dict(zip(ids.tolist(), folds.tolist(), strict=True))


def plan_folds(manifest: Manifest) -> list[FoldPlan]:
    """Turn the manifest's ``fold`` fields into train/test row indices.

    Training rows of fold ``k`` are every utterance (original or augmented) whose *source* utterance is not in fold
    ``k``; test rows are the original utterances of fold ``k``. Augmented copies are never test rows.
    """
    fold_of = {u.id: u.fold for u in manifest if u.augmented_from is None}
    src_fold = np.array([_or(fold_of.get(u.augmented_from or u.id), -1) for u in manifest], dtype=np.int64)
    is_aug = np.array([u.augmented_from is not None for u in manifest])
    folds = sorted({f for f in src_fold[~is_aug].tolist() if f >= 0})
    plans = []
    for k in folds:
        test = np.flatnonzero((src_fold == k) & ~is_aug)
        train = np.flatnonzero(src_fold != k)
        plans.append(FoldPlan(k, train, test))
    return plans


def _or(value: int | None, default: int) -> int:
    return default if value is None else int(value)


def split_validation_speakers(speakers: np.ndarray, labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Pick held-out validation speakers inside a training fold.

    Args:
        speakers: Speaker id per training row.
        labels: Label per training row (used to keep every class in training where possible).
        fraction: Share of speakers to hold out (at least one, at most all but one).
        seed: Random seed.

    Returns:
        Boolean mask over rows: ``True`` for validation rows.
    """
    uniq = np.array(sorted(set(speakers.tolist())))
    if len(uniq) < 2:
        raise CorpusError(
            f"a training fold has {len(uniq)} speaker(s); validation needs held-out speakers: use fewer folds or "
            "a corpus with more speakers"
        )
    n_val = int(np.clip(round(fraction * len(uniq)), 1, len(uniq) - 1))
    rng = np.random.default_rng(seed)
    val = set(rng.choice(uniq, size=n_val, replace=False).tolist())
    return np.array([s in val for s in speakers.tolist()])
