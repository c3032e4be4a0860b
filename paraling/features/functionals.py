"""Utterance-level feature vectors for the baselines, cached on disk.

- ``compare``: the openSMILE ComParE_2016 functionals (6373 per utterance; the ComParE challenge baseline set),
  computed with the ``opensmile`` package on the waveform decoded by :func:`paraling.data.audio.load_audio` (the one
  decoder). Each vector is cached as ``<cache_dir>/functionals/<key[:2]>/<key>.npy`` with
  ``key = hash(audio bytes, feature set, opensmile version, sample rate)``; writes are atomic.
- ``frames``: per-dimension mean and standard deviation (``model.baseline.pooling=mean_std``; or the mean alone)
  of the ``features`` extractor's frames over the utterance, taken from the same
  :class:`~paraling.features.FeatureStore` cache the window models use: log-mel bands, or a pre-trained encoder's
  hidden states with ``features=ssl`` (``logmel`` is its old name).

Example:
    >>> X, ok = utterance_features("compare", [u.path for u in manifest], cfg)  # doctest: +SKIP
    >>> X.shape  # doctest: +SKIP
    (630, 6373)
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from paraling.atomic import atomic_path
from paraling.data.audio import file_digest, load_audio
from paraling.errors import AudioError, ConfigError, DependencyError, FeatureError
from paraling.features import FeatureStore, make_extractor

__all__ = ["FEATURE_KINDS", "POOLINGS", "ComParEFunctionals", "baseline_features", "logmel_stats", "utterance_features"]

log = logging.getLogger(__name__)

FEATURE_KINDS: tuple[str, ...] = ("compare", "frames", "logmel")
POOLINGS: tuple[str, ...] = ("mean_std", "mean")
"""Feature sets computed from audio (``embeddings`` come from a CNN run, see :mod:`paraling.pipeline.embeddings_lr`)."""


def _save_npy(path: Path, arr: np.ndarray) -> None:
    try:
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.save(fh, arr, allow_pickle=False)
    except OSError as exc:
        raise FeatureError(f"{path}: cannot write cache entry ({exc})") from exc


class ComParEFunctionals:
    """openSMILE ComParE_2016 functionals of audio files, cached per file hash.

    Args:
        cache_dir: Root cache folder (entries go to ``<cache_dir>/functionals``).
        sample_rate: Audio is decoded and resampled to this rate before extraction.
        enabled: When false nothing is read from or written to the cache.

    Attributes:
        hits: Vectors read from the cache.
        misses: Vectors computed.
    """

    FEATURE_SET = "ComParE_2016"

    def __init__(self, cache_dir: str | Path, sample_rate: int = 16000, enabled: bool = True) -> None:
        self.root = Path(cache_dir) / "functionals"
        self.sample_rate = int(sample_rate)
        self.enabled = enabled
        self.hits = 0
        self.misses = 0
        self._smile: Any = None
        try:
            import opensmile
        except ImportError as exc:  # pragma: no cover - a declared dependency
            raise DependencyError("the ComParE baseline needs the opensmile package: pip install opensmile") from exc
        self._version = opensmile.__version__

    def _extractor(self) -> Any:
        if self._smile is None:
            import opensmile

            self._smile = opensmile.Smile(
                feature_set=opensmile.FeatureSet.ComParE_2016, feature_level=opensmile.FeatureLevel.Functionals
            )
        return self._smile

    def key(self, path: str | Path) -> str:
        """Cache key of ``path``: hash of its bytes, the feature set, the opensmile version and the sample rate."""
        h = hashlib.blake2b(digest_size=16)
        h.update(f"{file_digest(path)}|{self.FEATURE_SET}|functionals|{self._version}|{self.sample_rate}".encode())
        return h.hexdigest()

    def get(self, path: str | Path) -> np.ndarray:
        """The 6373 functionals of one file, float32 (non-finite values become 0)."""
        f = None
        if self.enabled:
            k = self.key(path)
            f = self.root / k[:2] / f"{k}.npy"
            if f.exists():
                try:
                    vec = np.load(f, allow_pickle=False)
                    self.hits += 1
                    return vec
                except (OSError, ValueError) as exc:
                    log.warning("%s: unreadable cache entry (%s); recomputing", f, exc)
                    f.unlink(missing_ok=True)
        self.misses += 1
        wave = load_audio(path, self.sample_rate)
        try:
            vec = self._extractor().process_signal(wave, self.sample_rate).to_numpy(dtype=np.float32).reshape(-1)
        except Exception as exc:  # opensmile raises plain RuntimeError/OSError
            raise FeatureError(f"{path}: openSMILE ComParE_2016 extraction failed ({exc})") from exc
        vec = np.nan_to_num(vec, nan=0.0, posinf=0.0, neginf=0.0)
        if f is not None:
            _save_npy(f, vec)
        return vec

    def get_many(self, paths: Sequence[str | Path], progress: Callable[[int], None] | None = None) -> np.ndarray:
        """Stacked functionals, shape ``(n_files, 6373)``."""
        return _rows(self.get, paths, progress)[0]


def _rows(
    get: Callable[[Any], np.ndarray],
    paths: Sequence[str | Path],
    progress: Callable[[int], None] | None,
    skip_bad: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Stack ``get(path)``; with ``skip_bad`` an undecodable file gives a zero row and ``ok[i] = False``."""
    rows: list[np.ndarray | None] = []
    for p in paths:
        try:
            rows.append(get(p))
        except AudioError as exc:
            if not skip_bad:
                raise
            log.warning("skipping %s", exc)
            rows.append(None)
        if progress is not None:
            progress(1)
    ok = np.array([r is not None for r in rows], dtype=bool)
    if not ok.any():
        raise FeatureError(f"none of the {len(rows)} audio files could be decoded")
    dim = next(r for r in rows if r is not None).shape
    return np.stack([r if r is not None else np.zeros(dim, np.float32) for r in rows]), ok


def logmel_stats(
    paths: Sequence[str | Path], store: FeatureStore, progress: Callable[[int], None] | None = None
) -> np.ndarray:
    """Per-band mean and standard deviation of cached log-mel features, shape ``(n_files, 2 * n_mels)``."""
    return _rows(lambda p: _mean_std(store, p), paths, progress)[0]


def _mean_std(store: FeatureStore, path: str | Path, pooling: str = "mean_std") -> np.ndarray:
    x = np.asarray(store.get(path)[0], dtype=np.float64)
    stats = [x.mean(axis=0), x.std(axis=0)] if pooling == "mean_std" else [x.mean(axis=0)]
    return np.concatenate(stats).astype(np.float32)


def baseline_features(cfg: Any) -> str:
    """The feature set an utterance-level model reads: ``model.baseline.features``, with ``auto`` resolved
    (``compare`` over log-mel ``features``, ``frames`` over any other extractor, e.g. ``features=ssl``)."""
    kind = str(cfg.model.baseline.features)
    if kind == "auto":
        return "compare" if str(cfg.features.kind) in ("fbank", "melspec") else "frames"
    return kind


def utterance_features(
    kind: str, paths: Sequence[str | Path], cfg: Any, progress: Callable[[int], None] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Feature matrix ``(n_files, n_features)`` of ``kind`` (one of :data:`FEATURE_KINDS`) under config ``cfg``.

    Args:
        kind: One of :data:`FEATURE_KINDS`.
        paths: Audio files.
        cfg: The composed config (``cache_dir``, ``features``, ``corpus.on_bad_file``).
        progress: Called with 1 after each file.

    Returns:
        ``(X, ok)``: with ``corpus.on_bad_file=skip`` a file that cannot be decoded is skipped like the CNN skips it
        (``ok[i]`` false, its row zero); otherwise it raises :class:`~paraling.errors.AudioError`.

    Raises:
        ConfigError: Unknown ``kind``.
    """
    skip = str(getattr(getattr(cfg, "corpus", None), "on_bad_file", "error")) == "skip"
    if kind == "compare":
        ext = ComParEFunctionals(cfg.cache_dir, int(cfg.features.sample_rate), bool(cfg.features.cache))
        out = _rows(ext.get, paths, progress, skip)
        log.info("ComParE functionals: %d cached, %d computed", ext.hits, ext.misses)
        return out
    if kind in ("frames", "logmel"):
        spec = make_extractor(cfg.features, device=str(getattr(cfg, "device", "auto")))
        store = FeatureStore(Path(cfg.cache_dir) / "features", spec, bool(cfg.features.cache))
        pooling = str(getattr(getattr(getattr(cfg, "model", None), "baseline", None), "pooling", "mean_std"))
        out = _rows(lambda p: _mean_std(store, p, pooling), paths, progress, skip)
        log.info("frame statistics (%s): %d cached, %d computed", pooling, store.hits, store.misses)
        return out
    raise ConfigError(f"model.baseline.features must be one of {list(FEATURE_KINDS)} here, but got features={kind!r}")
