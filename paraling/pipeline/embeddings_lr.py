"""Logistic regression on CNN embeddings (the last hidden layer), on the CNN run's own folds.

Design: a *separate* tracked run that reads a finished CNN run, rather than a step inside the CNN run. A fold's
logistic regression must be trained on embeddings that the *same fold's* CNN computed for that fold's training
utterances (the out-of-fold ``oof/embeddings.npz`` of the CNN run holds each utterance as embedded by the model that
held it out, which would mix representations). So :class:`CNNEmbeddings` reloads the CNN run's configuration, its
cached features and its logged fold models (``model/fold<k>.safetensors``) and recomputes, per fold ``k``, the
embeddings of fold ``k``'s training utterances (including augmented copies, as the CNN saw them) and test utterances
with model ``k``. Nothing is added to the CNN run, and any earlier CNN run with ``tracking.log_model=true`` can be
used.

Usage (a baseline with ``model.kind=lr`` and ``model.baseline.features=embeddings``)::

    paraling train model=lr_emb model.baseline.embedding_run=<CNN run id> [model.baseline.embedding_level=window]

``embedding_level``: ``utterance`` fits on per-utterance mean embeddings; ``window`` fits on window embeddings (at
most ``MAX_TRAIN_WINDOWS`` training windows, sampled with the seed) and averages the window probabilities of each
test utterance (a mean vote). ``C`` is chosen from ``model.baseline.lr_c`` by speaker-grouped inner CV. The run has
the same metrics and ``oof/scores.npz`` as every run, ``paraling.model_type=lr`` and ``paraling.embedding_run``
tags; the corpus and ``cv`` settings must give exactly the CNN run's utterances and folds (checked).
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from paraling.data.manifest import Manifest
from paraling.data.splits import FoldPlan, plan_folds, split_validation_speakers
from paraling.device import eval_batch_size, to_numpy
from paraling.errors import ConfigError, TransferError
from paraling.scoring.oof import load_oof

__all__ = ["MAX_TRAIN_WINDOWS", "CNNEmbeddings"]

log = logging.getLogger(__name__)

MAX_TRAIN_WINDOWS = 20000
"""Training windows per fold for ``embedding_level=window`` (a seeded sample when there are more)."""


class CNNEmbeddings:
    """Per-fold embeddings from the fold models of a tracked CNN run.

    Args:
        cfg: The logistic-regression run's configuration (``model.baseline.embedding_run``/``embedding_level``,
            ``tracking.uri``, ``cache_dir``, ``device``, ``seed``).
        manifest: This run's manifest with folds (original utterances only).
        classes: This run's class names.

    Raises:
        ConfigError: No ``embedding_run``, or the CNN run's utterances, classes or folds differ from this run's.
        TransferError: The run has no logged models.
    """

    def __init__(self, cfg: DictConfig, manifest: Manifest, classes: list[str]) -> None:
        from paraling.config import ParalingConfig
        from paraling.config_checks import validate
        from paraling.device import resolve_device
        from paraling.pipeline.dataset import prepare_data
        from paraling.pipeline.pretrain import load_source
        from paraling.tracking.store import mlflow_client
        from paraling.tracking.tracker import resolve_tracking_uri

        run_id = cfg.model.baseline.embedding_run
        if not run_id:
            raise ConfigError(
                "model.baseline.features=embeddings needs model.baseline.embedding_run=<run id of a finished CNN "
                "run with tracking.log_model=true>"
            )
        self.run_id = str(run_id)
        self.level = str(cfg.model.baseline.embedding_level)
        self.seed = int(cfg.seed)
        self.uri = resolve_tracking_uri(cfg.tracking.uri)
        client = mlflow_client(self.uri)
        with tempfile.TemporaryDirectory() as tmp:
            try:
                cnn_yaml = Path(client.download_artifacts(self.run_id, "config.yaml", tmp)).read_text()
                oof = load_oof(client.download_artifacts(self.run_id, "oof/scores.npz", tmp))
            except Exception as exc:
                raise ConfigError(
                    f"model.baseline.embedding_run={self.run_id}: cannot read its config.yaml and "
                    f"oof/scores.npz from {self.uri} ({exc})"
                ) from exc
        self._check_same_folds(oof, manifest, classes)
        cnn_cfg = validate(OmegaConf.merge(OmegaConf.structured(ParalingConfig), OmegaConf.create(cnn_yaml)))
        cnn_cfg.cache_dir, cnn_cfg.progress, cnn_cfg.device = cfg.cache_dir, cfg.progress, cfg.device
        self.cnn_cfg = cnn_cfg
        self.data = prepare_data(cnn_cfg)
        self.device = resolve_device(str(cfg.device))
        self.data.bank.to(self.device)
        self.manifest = manifest
        self.row = {u.id: i for i, u in enumerate(self.data.manifest)}
        self.plans = {p.fold: p for p in plan_folds(self.data.manifest)}
        load_source(self.run_id, None, self.uri)  # fails early when the run logged no model

    def _check_same_folds(self, oof: Any, manifest: Manifest, classes: list[str]) -> None:
        mine = {u.id: (u.label, u.fold if u.fold is not None else -1) for u in manifest}
        theirs = {str(i): (str(oof.classes[y]), int(f)) for i, y, f in zip(oof.utt_ids, oof.y, oof.fold, strict=True)}
        if list(map(str, oof.classes)) != list(classes) or mine != theirs:
            raise ConfigError(
                f"model.baseline.embedding_run={self.run_id} was trained on other utterances, classes or folds than "
                "this run; use the same corpus, cv and seed settings as that CNN run"
            )

    def _model(self, fold: int) -> torch.nn.Module:
        from paraling.config_compat import legacy_node
        from paraling.models import build_window_model
        from paraling.pipeline.pretrain import load_source

        spec, state = load_source(self.run_id, fold, self.uri)
        model = build_window_model(
            OmegaConf.create(legacy_node("model", dict(spec["model"]))),
            int(spec["n_mels"]),
            int(spec["windows"]["width"]),
            len(spec["classes"]),
        )
        model.load_state_dict(state)
        return model.to(self.device).eval()

    def _embed(self, model: torch.nn.Module, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Window embeddings of ``rows`` and the position (into ``rows``) of each window's utterance."""
        from paraling.training.loop import predict_windows

        bank = self.data.bank
        mask = np.zeros(bank.n_utts, dtype=bool)
        mask[rows] = True
        idx = bank.windows_of(mask)
        _, emb = predict_windows(
            model, bank, idx, eval_batch_size(self.cnn_cfg.trainer, self.device), self.device, embeddings=True
        )
        local = np.full(bank.n_utts, -1, dtype=np.int64)
        local[rows] = np.arange(len(rows))
        emb = emb if emb is not None else np.zeros((0, int(getattr(model, "embed_dim", 0))), np.float32)
        return emb, local[to_numpy(bank.utt[idx])]

    @staticmethod
    def _mean(emb: np.ndarray, utt: np.ndarray, n: int) -> np.ndarray:
        out = np.zeros((n, emb.shape[1]), np.float64)
        np.add.at(out, utt, emb)
        return out / np.maximum(np.bincount(utt, minlength=n), 1)[:, None]

    def fold(self, plan: FoldPlan) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
        """``(X_train, y_train, speakers_train, X_test, test_utt)`` of ``plan`` (see
        :mod:`paraling.pipeline.baselines`)."""
        cnn_plan = self.plans.get(plan.fold)
        if cnn_plan is None:
            raise TransferError(f"run {self.run_id} has no fold {plan.fold}")
        data = self.data
        train_rows = cnn_plan.train
        if self.cnn_cfg.features.normalize == "global":  # the statistics the fold's CNN was trained with
            spk = np.array([data.manifest[i].speaker for i in train_rows])
            frac = float(self.cnn_cfg.trainer.val_speaker_fraction)
            val = split_validation_speakers(spk, data.y_utt[train_rows], frac, int(self.cnn_cfg.seed) + plan.fold)
            m = np.zeros(data.bank.n_utts, dtype=bool)
            m[train_rows[~val]] = True
            data.bank.set_global_norm(m)
        test_rows = np.array([self.row[self.manifest[i].id] for i in plan.test], dtype=np.int64)
        model = self._model(plan.fold)
        e_tr, u_tr = self._embed(model, train_rows)
        e_te, u_te = self._embed(model, test_rows)
        y_tr = data.y_utt[train_rows]
        spk_tr = np.array([data.manifest[i].speaker for i in train_rows])
        if self.level == "utterance":
            return self._mean(e_tr, u_tr, len(train_rows)), y_tr, spk_tr, self._mean(e_te, u_te, len(test_rows)), None
        keep = np.arange(len(e_tr))
        if len(keep) > MAX_TRAIN_WINDOWS:
            keep = np.sort(np.random.default_rng(self.seed + plan.fold).choice(keep, MAX_TRAIN_WINDOWS, replace=False))
        return e_tr[keep], y_tr[u_tr[keep]], spk_tr[u_tr[keep]], e_te, u_te
