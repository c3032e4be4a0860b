"""Feature extraction (registered extractors, log-mel built in), the on-disk cache, and corpus-level helpers."""

from paraling.features.logmel import LogMelSpec, extract_logmel
from paraling.features.registry import EXTRACTORS, Extractor, make_extractor, register_features
from paraling.features.store import FeatureStore

__all__ = [
    "EXTRACTORS",
    "Extractor",
    "FeatureStore",
    "LogMelSpec",
    "extract_logmel",
    "make_extractor",
    "register_features",
]
