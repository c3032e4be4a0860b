"""Feature extractors: the registry of ``features.kind`` and the interface an extractor offers.

An extractor turns a mono waveform into frames: ``extract(wave) -> (features (frames, n_features), energy
(frames,))``, at its ``sample_rate`` with frames every ``frame_shift_ms``; ``key()`` identifies its output (the
feature cache and packs are keyed by it, so two extractors must never share a key for different output). The built-in
log-mel FBANK and MelSpectrogram are :class:`~paraling.features.logmel.LogMelSpec`; one of your own is a class with
``from_config(cfg)`` registered with :func:`register_features` in a plug-in module (docs/extending.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any, Protocol

import numpy as np

from paraling.config_groups import LogMelConfig, SslConfig
from paraling.plugins import Entry, Registry

__all__ = ["EXTRACTORS", "Extractor", "make_extractor", "register_features"]


class Extractor(Protocol):
    """What the feature cache, the window bank and prediction need of an extractor."""

    @property
    def sample_rate(self) -> int:
        """The rate (Hz) :meth:`extract` expects."""

    @property
    def frame_shift_ms(self) -> float:
        """Milliseconds between frames."""

    @property
    def frame_length_ms(self) -> float:
        """Milliseconds each frame covers."""

    @property
    def n_features(self) -> int:
        """Values per frame."""

    def key(self) -> str:
        """A stable identity of what :meth:`extract` returns (cache and pack keys)."""

    def extract(self, wave: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(features (frames, n_features), energy (frames,))`` float32 of a mono waveform at :attr:`sample_rate`."""


#: The feature extractors, by ``features.kind``; an entry's target has ``from_config(cfg) -> Extractor``.
EXTRACTORS: Registry[Any] = Registry("features", "feature extractor")
#: Decorator: ``@register_features("mine", config=MyFeaturesConfig)`` on a class with ``from_config(cfg)``.
register_features = EXTRACTORS.register

for _kind in ("fbank", "melspec"):
    EXTRACTORS.add(Entry(_kind, "paraling.features.logmel:LogMelSpec", LogMelConfig))
EXTRACTORS.add(Entry("ssl", "paraling.features.ssl:SslExtractor", SslConfig))


def make_extractor(cfg: Any, device: str | None = None) -> Extractor:
    """The extractor a ``features`` config node (or a mapping, e.g. a model folder's ``spec.json``) describes.

    ``device``: the run's (or prediction's) device, which an extractor that runs a network on ``features.device=auto``
    follows (``features=ssl``).

    Raises:
        ConfigError: An unknown ``features.kind``, or settings the extractor refuses.
    """
    node = SimpleNamespace(**cfg) if isinstance(cfg, Mapping) else cfg
    extractor = EXTRACTORS.entry(str(node.kind)).load().from_config(node)
    if device is not None and getattr(extractor, "device", None) == "auto":
        extractor.device = str(device)
    return extractor
