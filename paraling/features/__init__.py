"""Feature extraction (log-mel), the on-disk cache, and corpus-level helpers."""

from paraling.features.logmel import LogMelSpec, extract_logmel
from paraling.features.store import FeatureStore

__all__ = ["FeatureStore", "LogMelSpec", "extract_logmel"]
