"""Everything before training: corpus → manifest with folds → (augmentation) → cached features → window bank.

With ``features.cache`` on (the default), the bank's frames come from a pack (:mod:`paraling.features.packed`): built
once from the per-file cache, then opened memory-mapped by every later run with the same corpus, features and window
layout. With it off, features are computed and held in RAM.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig

from paraling.data.manifest import Manifest, Utterance
from paraling.data.recipes import load_corpus
from paraling.data.splits import assign_cv_folds
from paraling.data.windows import WindowBank, fill_frames, plan_layout
from paraling.device import to_numpy
from paraling.errors import AudioError
from paraling.features import FeatureStore, make_extractor
from paraling.features.packed import PackStore, file_signatures
from paraling.features.registry import Extractor
from paraling.features.store import check_free_space
from paraling.progress import Progress
from paraling.training.loop import EvalSet

__all__ = ["AUDIO_DIGEST_TAG", "PreparedData", "audio_digest", "eval_set", "prepare_data"]

log = logging.getLogger(__name__)


@dataclass
class PreparedData:
    """Manifest with folds, class names and the window bank of all utterances.

    ``pack_reused`` is true when the bank's frames came from an existing pack (nothing was extracted or copied).
    """

    manifest: Manifest
    classes: list[str]
    y_utt: np.ndarray
    bank: WindowBank
    spec: Extractor
    store: FeatureStore
    pack_reused: bool = False


@dataclass
class _Item:
    """One utterance to extract: its manifest entry, feature variant tag and waveform transform."""

    utt: Utterance
    variant: str
    transform: Any


def _augment(manifest: Manifest, cfg: DictConfig) -> tuple[Manifest, list[str], list[Any]]:
    """Apply training-only augmentation; returns the manifest and per-utterance feature variants/transforms."""
    if cfg.augment.kind == "none":
        return manifest, [""] * len(manifest), [None] * len(manifest)
    from paraling.features.augment import augment_manifest

    return augment_manifest(manifest, cfg.augment)


def _extract(
    items: list[_Item], store: FeatureStore, on_bad_file: str, progress: Progress | None, keep: bool
) -> tuple[list[tuple[np.ndarray, np.ndarray]], np.ndarray, dict[str, str]]:
    """Features of every item through the cache; undecodable files are skipped or raise per ``on_bad_file``.

    Returns:
        ``(features, lengths, bad)``: the ``(feats, energy)`` pairs of the decodable items when ``keep`` (else an
        empty list, so at most one entry is mapped at a time), their frame counts, and id → reason of the others.
    """
    bar = progress.bar(len(items), "features") if progress else None
    feats, lengths, bad = [], [], {}
    for it in items:
        try:
            f, e = store.get(it.utt.path, it.variant, it.transform)
        except AudioError as exc:
            if on_bad_file != "skip":
                raise
            log.warning("skipping %s", exc)
            bad[it.utt.id] = str(exc)
        else:
            lengths.append(len(f))
            if keep:
                feats.append((f, e))
        if bar:
            bar.update(1)
    if bar:
        bar.close()
    return feats, np.array(lengths, dtype=np.int64), bad


def _without(items: list[_Item], bad: dict[str, str]) -> list[_Item]:
    """``items`` minus undecodable utterances and the augmented copies of them."""
    if bad:
        log.warning("%d utterance(s) could not be decoded and were skipped (corpus.on_bad_file=skip)", len(bad))
    return [it for it in items if it.utt.id not in bad and it.utt.augmented_from not in bad]


def _packed_bank(
    cfg: DictConfig, items: list[_Item], store: FeatureStore, progress: Progress | None
) -> tuple[WindowBank, list[_Item], bool]:
    """Open (or build once) the pack of these items; returns ``(bank, kept items, reused)``."""
    width, shift = int(cfg.windows.width), int(cfg.windows.shift)
    packs = PackStore(Path(cfg.cache_dir) / "packed")
    settings = {
        "spec": store.spec.key(),
        "width": width,
        "short_policy": cfg.windows.short_policy,
        "normalize": cfg.features.normalize,
        "on_bad_file": cfg.corpus.on_bad_file,
    }
    key = packs.key(settings, [(it.utt.id, it.utt.path, it.variant) for it in items])
    signatures = file_signatures([it.utt.path for it in items])
    pack = packs.load(key, signatures)
    reused = pack is not None
    if pack is not None:
        for reason in pack.skipped.values():
            log.warning("skipping %s", reason)
        items = _without(items, pack.skipped)
        log.info("features: %d utterances from pack %s (memory-mapped)", len(items), key[:12])
    else:
        store.remove_stale_temporaries()  # files of cache writes killed mid-way go before a new build
        _, lengths, bad = _extract(items, store, cfg.corpus.on_bad_file, progress, keep=False)
        hits, misses = store.hits, store.misses
        items = _without(items, bad)
        rows, kept = plan_layout(lengths, width, cfg.windows.short_policy, [it.utt.id for it in items])

        def get(i: int) -> tuple[np.ndarray, np.ndarray]:
            return store.get(items[i].utt.path, items[i].variant, items[i].transform)

        def fill(data: np.ndarray, energy: np.ndarray) -> None:
            fill_frames(data, energy, rows, get, cfg.features.normalize)

        pack = packs.build(key, signatures, rows, kept, store.spec.n_features, fill, {"settings": settings}, bad)
        log.info("features: %d cached, %d computed; packed as %s", hits, misses, key[:12])
    return WindowBank.from_frames(pack.data, pack.energy, pack.rows, pack.kept, width, shift), items, reused


def prepare_data(cfg: DictConfig, progress: Progress | None = None) -> PreparedData:
    """Load the corpus, assign folds, (augment), extract cached features and build the window bank."""
    manifest = load_corpus(cfg.corpus)
    manifest = assign_cv_folds(manifest, cfg.cv, int(cfg.seed))
    manifest, variants, transforms = _augment(manifest, cfg)
    classes = manifest.labels
    items = [_Item(u, v, t) for u, v, t in zip(manifest, variants, transforms, strict=True)]
    spec = make_extractor(cfg.features, device=str(cfg.device))
    store = FeatureStore(Path(cfg.cache_dir) / "features", spec, bool(cfg.features.cache))
    reused = False
    if cfg.features.cache:
        frames = sum(u.duration for u in manifest) * 1000.0 / spec.frame_shift_ms
        check_free_space(store.root, 2 * int(frames * (spec.n_features + 1) * 4) + (64 << 20))  # entries + pack
        bank, items, reused = _packed_bank(cfg, items, store, progress)
    else:
        feats, _, bad = _extract(items, store, cfg.corpus.on_bad_file, progress, keep=True)
        items = _without(items, bad)
        log.info("features: %d computed (features.cache=false)", store.misses)
        bank = WindowBank(
            [f for f, _ in feats],
            [e for _, e in feats],
            int(cfg.windows.width),
            int(cfg.windows.shift),
            cfg.windows.short_policy,
            cfg.features.normalize,
            [it.utt.id for it in items],
        )
    manifest = Manifest([it.utt for it in items], manifest.source)
    index = {c: i for i, c in enumerate(classes)}
    y_utt = np.array([index[u.label] for u in manifest], dtype=np.int64)
    return PreparedData(manifest, classes, y_utt, bank, spec, store, reused)


def eval_set(bank: WindowBank, rows: np.ndarray, y_utt: np.ndarray) -> EvalSet:
    """The windows of manifest rows ``rows`` with labels and local utterance indices."""
    mask = np.zeros(bank.n_utts, dtype=bool)
    mask[rows] = True
    idx = bank.windows_of(mask)
    utt_global = to_numpy(bank.utt[idx])
    local = np.full(bank.n_utts, -1, dtype=np.int64)
    local[rows] = np.arange(len(rows))
    return EvalSet(idx, torch.from_numpy(y_utt[utt_global]), local[utt_global], len(rows))


AUDIO_DIGEST_TAG = "paraling.audio_digest"


def audio_digest(cfg: DictConfig, manifest: Manifest) -> str:
    """The digest of the corpus's audio bytes (:meth:`Manifest.audio_digest`), through the feature cache's memo of
    file digests, so a cached corpus is not read again."""
    spec = make_extractor(cfg.features)
    store = FeatureStore(Path(cfg.cache_dir) / "features", spec, bool(cfg.features.cache))

    def content(path: str) -> str:
        try:
            return store.content_digest(path)
        except OSError:  # a file gone since it was read (or a runner that reads no audio): its absence is the fact
            return "unreadable"

    return manifest.audio_digest(content)
