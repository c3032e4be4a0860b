"""Corpus recipes: turn what is on disk into a :class:`~paraling.data.manifest.Manifest`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from paraling.data.manifest import Manifest
from paraling.errors import ConfigError

__all__ = ["load_corpus"]


def load_corpus(corpus: Any) -> Manifest:
    """Build the manifest selected by a ``corpus`` config node (kind csv | folders | manifest | demo | speech).

    The demo and speech corpora are built into ``corpus.path`` (default ``data/demo``, ``data/speech``) when they
    are not there yet.
    """
    kind = corpus.kind
    if kind == "csv":
        from paraling.data.recipes.csv import prepare_csv

        return prepare_csv(
            corpus.path,
            corpus.file_column,
            corpus.label_column,
            corpus.speaker_column,
            corpus.split_column,
            corpus.allow_outside_root,
            corpus.on_bad_file,
        )
    if kind == "folders":
        from paraling.data.recipes.folders import prepare_folders

        return prepare_folders(
            corpus.path, corpus.speaker_regex, tuple(corpus.extensions), corpus.on_bad_file, corpus.allow_outside_root
        )
    if kind == "manifest":
        return Manifest.read(corpus.path, corpus.allow_outside_root)
    if kind == "demo":
        from paraling.data.recipes.csv import prepare_csv
        from paraling.data.recipes.demo import prepare_demo

        out = Path(corpus.path or "data/demo")
        kwargs: dict[str, Any] = {"n_speakers": corpus.demo_speakers, "seed": corpus.demo_seed}
        if corpus.demo_snr_db:
            kwargs["snr_db"] = tuple(corpus.demo_snr_db)
        csv_path = prepare_demo(out, **kwargs)
        return prepare_csv(csv_path, on_bad_file=corpus.on_bad_file)
    if kind == "speech":
        from paraling.data.recipes.csv import prepare_csv
        from paraling.data.recipes.speech import prepare_speech

        kwargs = {"seed": corpus.demo_seed, "utts_per_class": corpus.speech_utts_per_class}
        if corpus.demo_snr_db:
            kwargs["snr_db"] = tuple(corpus.demo_snr_db)
        csv_path = prepare_speech(Path(corpus.path or "data/speech"), corpus.speech_root, **kwargs)
        return prepare_csv(csv_path, on_bad_file=corpus.on_bad_file)
    raise ConfigError(
        f"corpus.kind must be one of ['csv', 'folders', 'manifest', 'demo', 'speech'], but got kind={kind!r}"
    )
