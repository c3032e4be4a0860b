"""On-disk feature cache keyed by ``hash(audio bytes, feature spec, augmentation)``.

The content hash of an audio file is memoised under ``digests/`` by (size, mtime, inode), so a cache hit costs a
``stat`` and a memory-mapped load instead of reading the audio. Each entry is one ``.npy`` file holding
``(frames, n_mels + 1)`` float32 (the last column is the frame log
energy). Files are written to a temporary name and renamed, so a reader never sees a half-written entry; a file that
fails to load (e.g. a disk error) is deleted and recomputed. Entries are loaded memory-mapped.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from paraling.atomic import atomic_path
from paraling.data.audio import file_digest, load_audio
from paraling.errors import AudioError, FeatureError, ResourceError
from paraling.features.registry import Extractor

__all__ = ["FeatureStore", "check_free_space"]

log = logging.getLogger(__name__)

Transform = Callable[[np.ndarray, int], np.ndarray]


def check_free_space(folder: str | Path, needed_bytes: int, what: str = "feature cache") -> None:
    """Raise :class:`ResourceError` when ``folder``'s disk has less than ``needed_bytes`` (+10%) free."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(folder).free
    if free < needed_bytes * 1.1:
        raise ResourceError(
            f"{folder}: only {free / 1e6:.0f} MB free but the {what} needs about {needed_bytes / 1e6:.0f} MB; "
            "free some space, run `paraling cache clean`, or point cache_dir elsewhere"
        )


class FeatureStore:
    """Compute-once cache of log-mel features.

    Args:
        root: Cache folder (``<cache_dir>/features``).
        spec: The feature extractor (:class:`~paraling.features.registry.Extractor`): its key is part of every entry's.
        enabled: When false, features are computed every time and nothing is written.

    Example:
        >>> store = FeatureStore(".cache/paraling/features", LogMelSpec())  # doctest: +SKIP
        >>> feats, energy = store.get("a.wav")  # doctest: +SKIP
    """

    def __init__(self, root: str | Path, spec: Extractor, enabled: bool = True) -> None:
        self.root = Path(root)
        self.spec = spec
        self.enabled = enabled
        self.hits = 0
        self.misses = 0
        self._digests: dict[str, str] = {}

    def remove_stale_temporaries(self, max_age_s: float = 600.0) -> int:
        """Delete temporary files of writes that were killed (``.<name>.<random>.tmp``, older than ``max_age_s``).

        An entry or digest is written to such a file and renamed into place in milliseconds; one that is minutes old
        belongs to a process that died mid-write. Returns how many were removed.
        """
        if not self.root.is_dir():
            return 0
        limit, n = time.time() - max_age_s, 0
        for dirpath, _, names in os.walk(self.root, followlinks=False):
            for name in names:
                if not (name.startswith(".") and name.endswith(".tmp")):
                    continue
                f = Path(dirpath) / name
                with contextlib.suppress(OSError):
                    if f.lstat().st_mtime < limit:
                        f.unlink()
                        n += 1
        if n:
            log.info("removed %d temporary file(s) of interrupted cache writes under %s", n, self.root)
        return n

    def key(self, path: str | Path, variant: str = "") -> str:
        """Cache key of ``path`` (file bytes) under this spec and an optional variant tag (augmentation)."""
        h = hashlib.blake2b(digest_size=16)
        h.update(self.content_digest(path).encode())
        h.update(self.spec.key().encode())
        h.update(variant.encode())
        return h.hexdigest()

    def content_digest(self, path: str | Path) -> str:
        """The digest of ``path``'s bytes (memoised per process, and on disk when the cache is enabled)."""
        p = os.fspath(path)
        if p not in self._digests:
            self._digests[p] = self._file_digest(p)
        return self._digests[p]

    def _file_digest(self, p: str) -> str:
        """Content digest of ``p``, memoised on disk by (size, mtime, inode) so cache hits need not read the audio."""
        if not self.enabled:
            return file_digest(p)
        st = os.stat(p)
        sig = f"{st.st_size}:{st.st_mtime_ns}:{st.st_ino}"
        name = hashlib.blake2b(os.fsencode(os.path.abspath(p)), digest_size=16).hexdigest()
        memo = self.root / "digests" / name[:2] / name
        try:
            old_sig, digest = memo.read_text().split("\n")[:2]
            if old_sig == sig and len(digest) == 40:
                return digest
        except (OSError, ValueError):
            pass
        digest = file_digest(p)
        with atomic_path(memo) as tmp:
            tmp.write_text(f"{sig}\n{digest}\n")
        return digest

    def _file(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.npy"

    def get(
        self, path: str | Path, variant: str = "", transform: Transform | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(features (frames, n_mels), energy (frames,))`` for ``path``, computing and caching on a miss.

        Args:
            path: Audio file.
            variant: Tag that distinguishes transformed versions (e.g. ``pitch+1.0:c6``).
            transform: Applied to the decoded waveform before extraction, ``transform(wave, sample_rate)``.

        Raises:
            AudioError: The file cannot be decoded (names the file and the fix).
        """
        if not self.enabled:
            return self._compute(path, transform)
        f = self._file(self.key(path, variant))
        if f.exists():
            try:
                arr = np.load(f, mmap_mode="r", allow_pickle=False)
                if arr.ndim == 2 and arr.shape[1] == self.spec.n_features + 1:
                    self.hits += 1
                    return arr[:, :-1], arr[:, -1]
            except (ValueError, OSError) as exc:
                log.warning("%s: unreadable cache entry (%s); recomputing", f, exc)
            f.unlink(missing_ok=True)
        self.misses += 1
        feats, energy = self._compute(path, transform)
        self._write(f, np.concatenate([feats, energy[:, None]], axis=1))
        return feats, energy

    def _compute(self, path: str | Path, transform: Transform | None) -> tuple[np.ndarray, np.ndarray]:
        wave = load_audio(path, self.spec.sample_rate)
        if transform is not None:
            wave = transform(wave, self.spec.sample_rate)
        try:
            return self.spec.extract(wave)
        except (RuntimeError, ValueError) as exc:
            if "out of memory" in str(exc).lower():  # torch.OutOfMemoryError: the machine's fault, not the file's
                raise ResourceError(
                    f"{path}: out of memory while extracting features ({' '.join(str(exc).split())[:160]}); lower "
                    "features.chunk_seconds, run fewer trials per GPU, or extract on the CPU (features.device=cpu)"
                ) from exc
            raise AudioError(path, f"feature extraction failed ({exc}).", "check the file plays correctly.") from exc

    def _write(self, f: Path, arr: np.ndarray) -> None:
        try:
            with atomic_path(f) as tmp, open(tmp, "wb") as fh:
                np.save(fh, arr.astype(np.float32, copy=False), allow_pickle=False)
        except OSError as exc:
            if exc.errno == 28:  # ENOSPC
                raise ResourceError(
                    f"{self.root}: disk full while caching features; free space or run `paraling cache clean`"
                ) from exc
            raise FeatureError(f"{f}: cannot write cache entry ({exc})") from exc
