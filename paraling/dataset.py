"""Everything before training: corpus → manifest with folds → (augmentation) → cached features → window bank."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig

from paraling.data.manifest import Manifest
from paraling.data.recipes import load_corpus
from paraling.data.splits import assign_folds
from paraling.errors import AudioError
from paraling.features import FeatureStore, LogMelSpec
from paraling.features.store import check_free_space
from paraling.progress import Progress
from paraling.training import EvalSet
from paraling.windows import WindowBank

__all__ = ["PreparedData", "eval_set", "prepare_data"]

log = logging.getLogger(__name__)


@dataclass
class PreparedData:
    """Manifest with folds, class names and the window bank of all utterances."""

    manifest: Manifest
    classes: list[str]
    y_utt: np.ndarray
    bank: WindowBank
    spec: LogMelSpec
    store: FeatureStore


def _augment(manifest: Manifest, cfg: DictConfig) -> tuple[Manifest, list[str], list[Any]]:
    """Apply training-only augmentation; returns the manifest and per-utterance feature variants/transforms."""
    if cfg.augment.name == "none":
        return manifest, [""] * len(manifest), [None] * len(manifest)
    from paraling.augment import augment_manifest

    return augment_manifest(manifest, cfg.augment)


def prepare_data(cfg: DictConfig, progress: Progress | None = None) -> PreparedData:
    """Load the corpus, assign folds, (augment), extract cached features and build the window bank."""
    manifest = load_corpus(cfg.corpus)
    folds = assign_folds(manifest, cfg.cv.scheme, int(cfg.cv.folds), bool(cfg.cv.stratify), int(cfg.seed))
    manifest = manifest.with_folds(folds)
    manifest, variants, transforms = _augment(manifest, cfg)
    classes = manifest.labels
    index = {c: i for i, c in enumerate(classes)}
    y_utt = np.array([index[u.label] for u in manifest], dtype=np.int64)
    spec = LogMelSpec.from_config(cfg.features)
    store = FeatureStore(Path(cfg.cache_dir) / "features", spec, bool(cfg.features.cache))
    if cfg.features.cache:
        frames = sum(u.duration for u in manifest) * 1000.0 / spec.frame_shift_ms
        check_free_space(store.root, int(frames * (spec.n_mels + 1) * 4) + (64 << 20))
    bar = progress.bar(len(manifest), "features") if progress else None
    feats, ok = [], []
    for i, u in enumerate(manifest):
        try:
            feats.append(store.get(u.path, variants[i], transforms[i]))
            ok.append(i)
        except AudioError as exc:
            if cfg.corpus.on_bad_file != "skip":
                raise
            log.warning("skipping %s", exc)
        if bar:
            bar.update(1)
    if bar:
        bar.close()
    if len(ok) < len(manifest):
        dropped = {manifest[i].id for i in range(len(manifest)) if i not in set(ok)}
        log.warning("%d utterance(s) could not be decoded and were skipped (corpus.on_bad_file=skip)", len(dropped))
        keep = [u for u in manifest if u.id not in dropped and u.augmented_from not in dropped]
        pos = {u.id: i for i, u in enumerate(manifest)}
        feats = [feats[ok.index(pos[u.id])] for u in keep]
        variants = [variants[pos[u.id]] for u in keep]
        manifest = Manifest(keep, manifest.source)
        y_utt = np.array([index[u.label] for u in manifest], dtype=np.int64)
    log.info("features: %d cached, %d computed", store.hits, store.misses)
    bank = WindowBank(
        [f for f, _ in feats],
        [e for _, e in feats],
        int(cfg.windows.width),
        int(cfg.windows.shift),
        cfg.windows.short_policy,
        cfg.features.normalize,
        [u.id for u in manifest],
    )
    return PreparedData(manifest, classes, y_utt, bank, spec, store)


def eval_set(bank: WindowBank, rows: np.ndarray, y_utt: np.ndarray) -> EvalSet:
    """The windows of manifest rows ``rows`` with labels and local utterance indices."""
    mask = np.zeros(bank.n_utts, dtype=bool)
    mask[rows] = True
    idx = bank.windows_of(mask)
    utt_global = bank.utt[idx].numpy()
    local = np.full(bank.n_utts, -1, dtype=np.int64)
    local[rows] = np.arange(len(rows))
    return EvalSet(idx, torch.from_numpy(y_utt[utt_global]), local[utt_global], len(rows))
