"""Corpus recipes: turn what is on disk into a :class:`~paraling.data.manifest.Manifest`.

Every recipe is registered in :data:`CORPORA` under its ``corpus.kind`` with the dataclass of its config node
(:mod:`paraling.config_groups`); :func:`load_corpus` dispatches on it. A recipe of your own is a function
``(cfg) -> Manifest`` registered with :func:`register_corpus` in a plug-in module (docs/extending.md).
"""

from __future__ import annotations

from typing import Any

from paraling.config_groups import (
    CompareCorpusConfig,
    CremadCorpusConfig,
    CsvCorpusConfig,
    DemoCorpusConfig,
    EmoDbCorpusConfig,
    FoldersCorpusConfig,
    IemocapCorpusConfig,
    ManifestCorpusConfig,
    RavdessCorpusConfig,
    SpeechCorpusConfig,
)
from paraling.data.manifest import Manifest
from paraling.plugins import Entry, Registry

__all__ = ["CORPORA", "load_corpus", "register_corpus"]

#: The corpus recipes, by ``corpus.kind``.
CORPORA: Registry[Any] = Registry("corpus", "corpus recipe")
#: Decorator: ``@register_corpus("mine", config=MyCorpusConfig)`` on a function ``(cfg) -> Manifest``.
register_corpus = CORPORA.register

for _kind, _target, _config in (
    ("csv", "paraling.data.recipes.csv:load_csv", CsvCorpusConfig),
    ("folders", "paraling.data.recipes.folders:load_folders", FoldersCorpusConfig),
    ("manifest", "paraling.data.manifest:load_manifest", ManifestCorpusConfig),
    ("demo", "paraling.data.recipes.demo:load_demo", DemoCorpusConfig),
    ("speech", "paraling.data.recipes.speech:load_speech", SpeechCorpusConfig),
    ("emodb", "paraling.data.recipes.emodb:load_emodb", EmoDbCorpusConfig),
    ("ravdess", "paraling.data.recipes.ravdess:load_ravdess", RavdessCorpusConfig),
    ("cremad", "paraling.data.recipes.cremad:load_cremad", CremadCorpusConfig),
    ("iemocap", "paraling.data.recipes.iemocap:load_iemocap", IemocapCorpusConfig),
    ("compare", "paraling.data.recipes.compare:load_compare", CompareCorpusConfig),
):
    CORPORA.add(Entry(_kind, _target, _config))


def load_corpus(corpus: Any) -> Manifest:
    """Build the manifest selected by a ``corpus`` config node (its ``kind`` picks the recipe).

    The demo and speech corpora are built into ``corpus.path`` (default ``data/demo``, ``data/speech``) when they
    are not there yet.

    Raises:
        ConfigError: An unknown ``corpus.kind`` (naming the registered ones).
    """
    return CORPORA.entry(str(corpus.kind)).load()(corpus)
