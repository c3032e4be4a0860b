"""A corpus's frames packed into one memory-mapped file, so a re-run opens its features with one ``mmap``.

Per-file cache entries (:class:`~paraling.features.store.FeatureStore`) make extraction compute-once, but a run that
loads 10,000 of them pays a digest lookup, an ``open`` and a ``mmap`` per file and then copies everything into one
tensor in RAM. A *pack* is that tensor written to disk once: ``<cache_dir>/packed/<key>/`` holds

- ``data.npy`` ``(total_frames, n_mels)`` float32 and ``energy.npy`` ``(total_frames,)`` float32, laid out by
  :func:`paraling.data.windows.plan_layout` / :func:`paraling.data.windows.fill_frames` (padding, short-utterance
  policy and per-utterance normalisation already applied);
- ``index.npz``: rows per utterance, kept flags, and each audio file's (size, mtime, inode) signature;
- ``meta.json``: the key's inputs, utterance ids and the utterances skipped as undecodable (written last).

The key hashes the feature spec, the layout settings and the ordered (id, path, variant) list; the signatures detect
changed audio files, which makes the pack stale (it is rebuilt from the per-file cache, which recomputes only the
changed files). A pack is built in a temporary folder and renamed into place, so a killed build leaves no pack
behind, and is opened read-only and memory-mapped: corpora larger than RAM work, and nothing is copied.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from paraling.atomic import default_mode
from paraling.errors import FeatureError, ResourceError
from paraling.features.store import check_free_space
from paraling.filelock import acquire, is_free

__all__ = ["Pack", "PackStore", "file_signatures"]

log = logging.getLogger(__name__)

FORMAT_VERSION = 1


def file_signatures(paths: Sequence[str | os.PathLike[str]]) -> np.ndarray:
    """``(n, 3)`` int64 (size, mtime in ns, inode) of each file; a missing file gets ``-1`` everywhere."""
    out = np.full((len(paths), 3), -1, dtype=np.int64)
    for i, p in enumerate(paths):
        try:
            st = os.stat(p)
        except OSError:
            continue
        out[i] = (st.st_size, st.st_mtime_ns, st.st_ino)
    return out


@dataclass
class Pack:
    """An opened pack.

    Attributes:
        data: ``(total_frames, n_mels)`` float32, read-only memory map.
        energy: ``(total_frames,)`` float32, read-only memory map.
        rows: ``(n_kept_utts,)`` int64 rows per utterance.
        kept: ``(n_kept_utts,)`` bool, false for utterances skipped as shorter than a window.
        skipped: Ids of utterances left out because their audio could not be decoded, with the reason.
        folder: Where the pack lives.
    """

    data: np.ndarray
    energy: np.ndarray
    rows: np.ndarray
    kept: np.ndarray
    skipped: dict[str, str] = field(default_factory=dict)
    folder: Path | None = None


class PackStore:
    """Packs under ``root`` (``<cache_dir>/packed``).

    Args:
        root: Folder holding one sub-folder per pack.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    @staticmethod
    def key(settings: dict[str, Any], entries: Sequence[tuple[str, str, str]]) -> str:
        """Key of a pack: ``settings`` (feature spec and layout) plus the ordered ``(id, path, variant)`` entries."""
        h = hashlib.blake2b(digest_size=16)
        h.update(json.dumps({"version": FORMAT_VERSION, **settings}, sort_keys=True, default=str).encode())
        for uid, path, variant in entries:
            h.update(f"{uid}\0{os.path.abspath(path)}\0{variant}\n".encode("utf-8", "surrogateescape"))
        return h.hexdigest()

    def load(self, key: str, signatures: np.ndarray) -> Pack | None:
        """The pack for ``key`` when it exists, is complete and its audio files are unchanged; else ``None``."""
        folder = self.root / key
        meta_file = folder / "meta.json"
        if not meta_file.is_file():
            return None
        try:
            meta = json.loads(meta_file.read_text())
            with np.load(folder / "index.npz", allow_pickle=False) as z:
                rows, kept, sigs = z["rows"], z["kept"], z["signatures"]
            data = np.load(folder / "data.npy", mmap_mode="r", allow_pickle=False)
            energy = np.load(folder / "energy.npy", mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError, KeyError) as exc:
            log.warning("%s: unreadable pack (%s); rebuilding it", folder, exc)
            return None
        if meta.get("version") != FORMAT_VERSION or data.ndim != 2 or len(energy) != len(data):
            log.warning("%s: pack of another format; rebuilding it", folder)
            return None
        if sigs.shape != signatures.shape or not np.array_equal(sigs, signatures):
            changed = int((sigs != signatures).any(axis=1).sum()) if sigs.shape == signatures.shape else len(sigs)
            log.info("features: %d audio file(s) changed since pack %s was built; rebuilding it", changed, key[:12])
            return None
        return Pack(data, energy, rows, kept, dict(meta.get("skipped", {})), folder)

    def build(
        self,
        key: str,
        signatures: np.ndarray,
        rows: np.ndarray,
        kept: np.ndarray,
        n_mels: int,
        fill: Callable[[np.ndarray, np.ndarray], None],
        meta: dict[str, Any] | None = None,
        skipped: dict[str, str] | None = None,
    ) -> Pack:
        """Write a pack atomically and return it opened.

        Args:
            key: From :meth:`key`.
            signatures: From :func:`file_signatures`, of the same files as the key's entries.
            rows: ``(n_utts,)`` rows per utterance (``plan_layout``).
            kept: ``(n_utts,)`` bool.
            n_mels: Bands per frame.
            fill: ``fill(data, energy)`` writes every utterance into the writable memory maps (``fill_frames``).
            meta: Extra description stored in ``meta.json``.
            skipped: Undecodable utterances left out of the pack, id → reason.

        Raises:
            ResourceError: The disk is too full for the pack.
            FeatureError: The pack cannot be written.
        """
        total = max(int(rows.sum()), 1)
        check_free_space(self.root, total * (n_mels + 1) * 4, "packed features")
        self._remove_leftovers()
        tmp = Path(tempfile.mkdtemp(dir=self.root, prefix=f".{key}.", suffix=".tmp"))
        lease = _hold_lease(tmp)
        try:
            data = np.lib.format.open_memmap(tmp / "data.npy", mode="w+", dtype=np.float32, shape=(total, n_mels))
            energy = np.lib.format.open_memmap(tmp / "energy.npy", mode="w+", dtype=np.float32, shape=(total,))
            fill(data, energy)
            data.flush()
            energy.flush()
            del data, energy
            np.savez(tmp / "index.npz", rows=rows, kept=kept, signatures=signatures)
            info = {"version": FORMAT_VERSION, "key": key, "skipped": skipped or {}, **(meta or {})}
            (tmp / "meta.json").write_text(json.dumps(info, default=str))
            os.chmod(tmp, default_mode(folder=True))  # mkdtemp made it 0700: a shared cache needs the umask's mode
            self._publish(tmp, self.root / key)
            os.close(lease)
        except OSError as exc:
            os.close(lease)
            shutil.rmtree(tmp, ignore_errors=True)
            if exc.errno == 28:  # ENOSPC
                raise ResourceError(
                    f"{self.root}: disk full while packing features; free space or run `paraling cache clean`"
                ) from exc
            raise FeatureError(f"{self.root / key}: cannot write packed features ({exc})") from exc
        except BaseException:
            os.close(lease)
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        pack = self.load(key, signatures)
        if pack is None:
            raise FeatureError(f"{self.root / key}: packed features vanished right after writing them")
        return pack

    def _remove_leftovers(self) -> None:
        """Delete the folders of builds that were killed, from any process, container or host sharing the cache.

        A build holds a ``flock`` on ``.lease`` in its temporary folder for as long as it runs (the kernel drops it
        when the builder dies, ``kill -9`` included); a temporary folder whose lease can be taken is a leftover. A
        moved-aside old pack (``.old``) is always removable: readers that still map it keep their mapping.
        """
        for d in self.root.glob(".*"):
            if not d.is_dir() or d.is_symlink():
                continue
            if d.name.endswith(".old") or (d.name.endswith(".tmp") and _lease_is_free(d)):
                log.info("removing %s, left by an interrupted pack build", d)
                shutil.rmtree(d, ignore_errors=True)

    @staticmethod
    def _publish(tmp: Path, final: Path) -> None:
        """Rename ``tmp`` to ``final``; an older pack there is moved aside first (open maps of it stay valid)."""
        old = None
        if final.exists():
            old = final.with_name(f".{final.name}.{uuid.uuid4().hex}.old")
            os.replace(final, old)
        try:
            os.replace(tmp, final)
        except OSError:
            if not final.exists():  # not lost a race with another writer of the same pack
                raise
            shutil.rmtree(tmp, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


_LEASE = ".lease"
_NO_LEASE_GRACE_S = 3600.0  # a temporary folder without a lease file (a build from before leases) is stale after this


def _hold_lease(folder: Path) -> int:
    """Take the build lease of ``folder``: an exclusive ``flock`` on its ``.lease`` file; returns the descriptor."""
    return acquire(folder / _LEASE)


def _lease_is_free(folder: Path) -> bool:
    """Whether no live process holds ``folder``'s build lease."""
    try:
        return is_free(folder / _LEASE)
    except FileNotFoundError:
        try:
            return time.time() - folder.stat().st_mtime > _NO_LEASE_GRACE_S
        except OSError:
            return False
    except OSError:
        return False
