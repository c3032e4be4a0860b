"""`corpus=speech` from the Asterisk prompts that `scripts/install.sh --dev` installs: real recordings, 7 speakers."""

from __future__ import annotations

from pathlib import Path

from paraling.config import compose
from paraling.data.recipes import load_corpus
from paraling.data.recipes.demo import LABELS
from paraling.data.recipes.speech import SPEAKERS


def test_speech_corpus_from_the_installed_prompts(tmp_path: Path) -> None:
    cfg = compose(["corpus=speech", f"corpus.path={tmp_path / 'speech'}", "corpus.speech_utts_per_class=1"])
    manifest = load_corpus(cfg.corpus)
    utts = list(manifest)
    assert len(utts) == len(SPEAKERS) * len(LABELS)
    assert {u.speaker for u in utts} == {s[0] for s in SPEAKERS}
    assert {u.label for u in utts} == set(LABELS)
    assert all(1.8 <= u.duration <= 6.9 for u in utts)  # 1.5-6 s prompts plus 0.3-0.9 s of lead and tail
    assert (tmp_path / "speech" / ".complete").is_file()
    again = load_corpus(cfg.corpus)  # the finished corpus is reused as it is
    assert [u.id for u in again] == [u.id for u in utts]
