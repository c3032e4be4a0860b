"""Report rows that are another row's networks under another vote.

Two configurations that differ only in ``aggregation`` train the very same networks (the epoch is selected by the
posterior-mean UAR of the validation speakers whatever the vote, so the same seed gives the same weights), and every
CNN run stores the out-of-fold scores of every vote (``oof/all_aggregations.npz``). A report file's ``vote_rows``
(``conf/report/table1.yaml``: net2 from net3's runs under the majority vote) scores such a row from the other row's
runs when it has none of its own, instead of asking for a second, identical training; the row says so, and its
paired test against the source compares the two votes on the same networks.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from paraling.errors import EnsembleError
from paraling.scoring.oof import OOFScores

__all__ = ["load_vote", "load_votes", "vote_row_sources"]

log = logging.getLogger(__name__)


def vote_row_sources(
    present: Sequence[str], rows: Mapping[str, tuple[str, str]], names: Sequence[str] | None = None
) -> dict[str, tuple[str, str]]:
    """The vote rows to derive (``row -> (source row, vote)``): absent from ``present``, their source present, and
    wanted by ``names``."""
    return {
        row: (src, vote)
        for row, (src, vote) in rows.items()
        if row not in present and src in present and (names is None or row in names)
    }


def load_votes(oof: OOFScores, run_id: str, votes: Sequence[str], dst: str | Path, client: Any) -> dict[str, OOFScores]:
    """``oof`` (a run's headline scores) under each of ``votes``: its probabilities replaced by that vote's, aligned by
    utterance id (one download of ``oof/all_aggregations.npz``).

    Raises:
        EnsembleError: The run has no ``oof/all_aggregations.npz`` or not every vote, or its utterances differ.
    """
    from mlflow.exceptions import MlflowException

    folder = Path(dst) / f"{run_id}-votes"
    folder.mkdir(parents=True, exist_ok=True)
    try:
        path = client.download_artifacts(run_id, "oof/all_aggregations.npz", str(folder))
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (MlflowException, OSError, ValueError) as exc:  # no such artifact, unreadable or corrupt file
        raise EnsembleError(f"run {run_id}: cannot read oof/all_aggregations.npz ({exc})") from exc
    missing = [v for v in votes if v not in arrays]
    if missing or "utt_ids" not in arrays:
        raise EnsembleError(f"run {run_id}: oof/all_aggregations.npz has no {missing or ['utt_ids']} scores")
    ids = arrays["utt_ids"]
    order = np.argsort(ids, kind="stable")
    pos = np.searchsorted(ids, oof.utt_ids, sorter=order)
    pos = order[np.minimum(pos, len(ids) - 1)] if len(ids) else pos
    if len(ids) != len(oof.utt_ids) or not np.array_equal(ids[pos], oof.utt_ids):
        raise EnsembleError(f"run {run_id}: oof/all_aggregations.npz lists other utterances than oof/scores.npz")
    return {
        v: OOFScores(
            oof.utt_ids, oof.classes, oof.y, oof.fold, oof.split, oof.speaker, arrays[v][pos].astype(np.float32)
        )
        for v in votes
    }


def load_vote(oof: OOFScores, run_id: str, vote: str, dst: str | Path, client: Any) -> OOFScores:
    """:func:`load_votes` for one vote."""
    return load_votes(oof, run_id, [vote], dst, client)[vote]
