"""Speaker-independent fold assignment: grouped (stratified) k-fold, leave-one-group-out, fixed split.

The groups are speakers by default, or any manifest column (``cv.group_by``: e.g. IEMOCAP's ``session``, for its
leave-one-session-out protocol). Folds are computed on *original* utterances; augmented copies inherit the fold of
their source utterance and are only ever used for training (see :func:`plan_folds`). A fixed split scores the
utterances of one split (``cv.test_split``: ``test``, or ``devel`` to tune on a challenge's development set); the
utterances of a later evaluation split are then left out of training altogether (fold :data:`EXCLUDED`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.model_selection import GroupKFold, StratifiedGroupKFold

from paraling.data.manifest import Manifest
from paraling.errors import CorpusError

__all__ = [
    "EXCLUDED",
    "FoldPlan",
    "assign_cv_folds",
    "assign_folds",
    "describe_protocol",
    "groups_of",
    "plan_folds",
    "split_validation_speakers",
]

#: The fold of utterances a protocol leaves out entirely (the test set while tuning on the development set).
EXCLUDED = -2

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FoldPlan:
    """Row indices (into the manifest) of one fold: what to train on and what to score."""

    fold: int
    train: np.ndarray
    test: np.ndarray


def groups_of(manifest: Manifest, group_by: str = "speaker") -> list[str]:
    """The group of each utterance: its speaker, or the manifest column ``group_by`` (an ``extra`` field).

    Raises:
        CorpusError: An utterance without that column (naming it and the columns there are).
    """
    if group_by == "speaker":
        return [u.speaker for u in manifest]
    out = []
    for u in manifest:
        value = u.extra.get(group_by, getattr(u, group_by, None) if group_by in ("split", "label") else None)
        if value in (None, ""):
            columns = sorted({"speaker", "label", "split", *u.extra})
            raise CorpusError(
                f"{manifest.source}: cv.group_by={group_by} but utterance {u.id} has no {group_by!r} column; "
                f"it has {columns}"
            )
        out.append(str(value))
    return out


def describe_protocol(scheme: str, n_folds: int, group_by: str = "speaker", test_split: str = "test") -> str:
    """The protocol in words, for a run's description (two runs with the same words are comparable)."""
    if scheme == "split":
        return f"fixed split: train on the rest, score split={test_split}"
    if scheme == "loso":
        return f"leave-one-{group_by}-out"
    return f"{n_folds}-fold cross-validation grouped by {group_by}"


def assign_folds(
    manifest: Manifest,
    scheme: str = "kfold",
    n_folds: int = 5,
    stratify: bool = True,
    seed: int = 0,
    group_by: str = "speaker",
    test_split: str = "test",
) -> dict[str, int]:
    """Return ``{utterance id: fold}`` for the original (non-augmented) utterances.

    ``kfold``: the groups (speakers, or the column ``group_by``) are partitioned into ``n_folds`` folds (stratified
    by label when possible, shuffled with ``seed``); ``loso``: one fold per group; ``split``: utterances whose
    ``split`` is ``test_split`` form fold 0, those of a later evaluation split (``test`` while ``test_split`` is
    ``devel``) are left out (:data:`EXCLUDED`) and all others are training-only (fold -1).

    Raises:
        CorpusError: Fewer groups than folds, no utterances of ``test_split``, or a missing ``group_by`` column.
    """
    utts = Manifest([u for u in manifest if u.augmented_from is None], manifest.source)
    ids = np.array([u.id for u in utts])
    speakers = np.array(groups_of(utts, group_by))
    labels = np.array([u.label for u in utts])
    n_spk = len(set(speakers.tolist()))
    if scheme == "split":
        return _split_folds(utts, ids, speakers, test_split)
    if scheme == "loso":
        order = sorted(set(speakers.tolist()))
        if len(order) < 2:
            raise CorpusError(f"{manifest.source}: leave-one-{group_by}-out needs >= 2 groups, found {len(order)}")
        index = {s: k for k, s in enumerate(order)}
        return {i: index[s] for i, s in zip(ids.tolist(), speakers.tolist(), strict=True)}
    if n_spk < n_folds:
        raise CorpusError(
            f"{manifest.source}: {n_spk} {group_by}(s) but cv.folds={n_folds}; grouped folds need at "
            f"least as many groups as folds: lower cv.folds (e.g. cv.folds={max(2, n_spk)}) or use cv.scheme=loso"
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


def _split_folds(utts: Manifest, ids: np.ndarray, groups: np.ndarray, test_split: str) -> dict[str, int]:
    """Folds of ``cv.scheme=split``: 0 for ``test_split``, :data:`EXCLUDED` for ``test`` while tuning, -1 else."""
    splits = np.array([(u.split or "").lower() for u in utts])
    test = splits == test_split.lower()
    if not test.any():
        found = sorted(set(splits.tolist()) - {""})
        raise CorpusError(
            f"{utts.source}: cv.scheme=split scores split={test_split}, but no utterance has it (splits here: "
            f"{found or 'none'}); add a 'split' column or set cv.test_split / cv.scheme=kfold"
        )
    held_out = (splits == "test") & ~test  # tuning on devel: the test set is not trained on
    train = ~test & ~held_out
    overlap = set(groups[test].tolist()) & set(groups[train].tolist())
    if overlap:
        log.warning(
            "%s: %d speaker(s) appear in both train and %s (e.g. %s): results are not speaker-independent",
            utts.source,
            len(overlap),
            test_split,
            sorted(overlap)[:3],
        )
    folds = np.where(test, 0, np.where(held_out, EXCLUDED, -1))
    return dict(zip(ids.tolist(), folds.tolist(), strict=True))


def assign_cv_folds(manifest: Manifest, cv: Any, seed: int) -> Manifest:
    """``manifest`` with the folds a ``cv`` config node describes (:func:`assign_folds`)."""
    group_by, test_split = str(getattr(cv, "group_by", "speaker")), str(getattr(cv, "test_split", "test"))
    folds = assign_folds(manifest, cv.scheme, int(cv.folds), bool(cv.stratify), seed, group_by, test_split)
    return manifest.with_folds(folds)


def plan_folds(manifest: Manifest) -> list[FoldPlan]:
    """Turn the manifest's ``fold`` fields into train/test row indices.

    Training rows of fold ``k`` are every utterance (original or augmented) whose *source* utterance is neither in
    fold ``k`` nor left out (:data:`EXCLUDED`); test rows are the original utterances of fold ``k``. Augmented
    copies are never test rows.
    """
    fold_of = {u.id: u.fold for u in manifest if u.augmented_from is None}
    src_fold = np.array([_or(fold_of.get(u.augmented_from or u.id), -1) for u in manifest], dtype=np.int64)
    is_aug = np.array([u.augmented_from is not None for u in manifest])
    folds = sorted({f for f in src_fold[~is_aug].tolist() if f >= 0})
    plans = []
    for k in folds:
        test = np.flatnonzero((src_fold == k) & ~is_aug)
        train = np.flatnonzero((src_fold != k) & (src_fold != EXCLUDED))
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
