"""Reading another vote of a run: aligned by utterance id, whatever order the file holds them in."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from paraling.errors import EnsembleError
from paraling.report.vote_rows import load_vote, vote_row_sources
from paraling.scoring.oof import OOFScores


class _Store:
    """Stands in for an MLflow client: ``download_artifacts`` returns the file written for the run."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def download_artifacts(self, run_id: str, artifact: str, dst: str) -> str:
        assert artifact == "oof/all_aggregations.npz"
        return str(self.path)


def test_load_vote_aligns_by_utterance_id(fake_oof: Callable[..., OOFScores], tmp_path: Path) -> None:
    oof = fake_oof(0)
    majority = np.random.default_rng(1).random(oof.proba.shape).astype(np.float32)
    shuffle = np.random.default_rng(2).permutation(len(oof.utt_ids))
    path = tmp_path / "votes.npz"
    np.savez(path, utt_ids=oof.utt_ids[shuffle], majority=majority[shuffle])
    got = load_vote(oof, "r1", "majority", tmp_path, _Store(path))
    np.testing.assert_array_equal(got.proba, majority)
    assert list(got.utt_ids) == list(oof.utt_ids) and (got.y == oof.y).all()
    with pytest.raises(EnsembleError, match=r"no \['weighted'\] scores"):
        load_vote(oof, "r1", "weighted", tmp_path, _Store(path))
    np.savez(path, utt_ids=oof.utt_ids[:-1], majority=majority[:-1])
    with pytest.raises(EnsembleError, match="other utterances"):
        load_vote(oof, "r1", "majority", tmp_path, _Store(path))


def test_vote_rows_only_where_the_row_has_no_runs() -> None:
    rows = {"net2": ("net3", "majority")}  # conf/report/table1.yaml's
    assert vote_row_sources(["net1", "net3"], rows) == {"net2": ("net3", "majority")}
    assert vote_row_sources(["net2", "net3"], rows) == {}
    assert vote_row_sources(["net1"], rows) == {}
    assert vote_row_sources(["net3"], rows, names=["net3"]) == {}
    assert vote_row_sources(["net1", "net3"], {}) == {}  # no report file: no derived rows
