"""The CNN as a :class:`~paraling.pipeline.cv.FoldRunner`: windows in, voted utterance scores out.

Per fold the CNN trains on the training speakers, selects its epoch on held-out speakers of the training fold, fits
the voting estimators on those held-out speakers' windows, and scores the fold's test utterances with every voting
method (the configured one is the run's headline and is saved with the model so that ``paraling predict`` votes
alike). The fold's metrics include the weighted vote's diagnostics (:mod:`paraling.scoring.vote_diagnostics`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from paraling.data.splits import FoldPlan, split_validation_speakers
from paraling.device import eval_batch_size, resolve_precision, to_numpy
from paraling.models import build_window_model
from paraling.models.registry import layer_names
from paraling.pipeline.cv import CVData, FoldOutput, WindowScores
from paraling.pipeline.dataset import PreparedData, eval_set, prepare_data
from paraling.pipeline.encoder_transfer import is_encoder_transfer
from paraling.pipeline.pretrain import TransferSource, apply_transfer
from paraling.pipeline.results import negative_class_index
from paraling.progress import Progress
from paraling.scoring.aggregation import METHODS, make_aggregator
from paraling.scoring.aggregation_state import fold_state
from paraling.scoring.vote_diagnostics import vote_diagnostics
from paraling.tracking.logged_model import link_logged_model
from paraling.tracking.model_dir import ModelSpec, save_model_dir
from paraling.tracking.runs import ENCODER_TAG
from paraling.tracking.tracker import RunTracker
from paraling.training.loop import EvalSet, FitOptions, FitResult, Reporter, fit, predict_windows

__all__ = ["CNNRunner"]

log = logging.getLogger(__name__)


class CNNRunner:
    """Cross-validates the configured :class:`~paraling.models.cnn.WindowCNN`.

    Args:
        cfg: Validated configuration (``model.kind == "cnn"``).
        device: Where to train.
        progress: Progress bars.
        reporter: Receives every fold's per-epoch metrics (a search's pruning); may raise ``Pruned``.
        checkpoints: Folder of per-fold checkpoints (resume), or ``None``.
        source: The transfer source (:func:`paraling.pipeline.pretrain.load_transfer_source`), or ``None``.
    """

    methods = METHODS

    def __init__(
        self,
        cfg: DictConfig,
        device: torch.device,
        progress: Progress,
        reporter: Reporter | None,
        checkpoints: Path | None,
        source: TransferSource | None = None,
    ) -> None:
        self.cfg, self.device, self.progress, self.reporter = cfg, device, progress, reporter
        self.checkpoints, self.source = checkpoints, source
        self.primary = str(cfg.aggregation.kind)
        self.methods = METHODS if self.primary in METHODS else (*METHODS, self.primary)  # a vote of your own too
        self.embedding_dim = 0  # the window model's embed_dim, known once the data says what windows look like
        self.data: PreparedData | None = None
        self.models: dict[int, torch.nn.Module] = {}
        self.states: dict[int, dict[str, Any]] = {}

    def prepare(self) -> CVData:
        """Manifest with folds, (augmentation,) cached features and the window bank, placed on the device."""
        data = prepare_data(self.cfg, self.progress)
        negative_class_index(self.cfg.corpus, list(data.classes))  # a wrong corpus.negative_class fails here
        data.bank.to(self.device)  # on a GPU: features, window index and gathers on the device when they fit
        self.data = data
        probe = self._build()
        self.embedding_dim = int(probe.embed_dim)
        params: dict[str, Any] = {"data.n_windows": data.bank.n_windows}
        tags = {"paraling.training.device": str(self.device), "paraling.model_type": str(self.cfg.model.kind)}
        identity = getattr(data.spec, "identity", None)  # a pre-trained encoder's: hub id @ commit or folder digest
        if identity:
            params["data.encoder"] = tags[ENCODER_TAG] = str(identity)
            params["data.encoder_precision"] = str(getattr(data.spec, "dtype_name", ""))
        metrics = {"features_computed": float(data.store.misses), "features_cached": float(data.store.hits)}
        return CVData(data.manifest, list(data.classes), data.y_utt, params=params, tags=tags, metrics=metrics)

    def _build(self) -> Any:
        """A fresh window model for the prepared data (the extractor passed on: a head over an encoder reads it)."""
        assert self.data is not None, "prepare() first"
        bank = self.data.bank
        return build_window_model(self.cfg.model, bank.n_mels, bank.width, len(self.data.classes), self.data.spec)

    def fit_fold(self, plan: FoldPlan, log_epoch: Callable[[int, dict[str, float]], None]) -> FoldOutput:
        """Train one fold; score its test utterances with every voting method."""
        assert self.data is not None, "prepare() first"
        bank = self.data.bank
        train_set, val_set, test_set = self._fold_sets(plan)
        model = self._build()
        result = self._train(plan, model, train_set, val_set, log_epoch)
        scores, diagnostics, p_test, emb_utt = self._vote(plan, model, val_set, test_set)
        self.models[plan.fold] = model.cpu()
        starts = to_numpy(bank.starts[test_set.idx]) - bank.offsets[plan.test][test_set.utt]
        return FoldOutput(
            scores=scores,
            metrics={"best_epoch": result.best_epoch, "windows_per_s": result.windows_per_second} | diagnostics,
            embeddings=emb_utt,
            windows=WindowScores(p_test, test_set.utt, starts),
            history=result.history,
            info={"capture": result.capture}
            | ({"capture_error": result.capture_error} if result.capture_error else {}),
        )

    def _fold_sets(self, plan: FoldPlan) -> tuple[EvalSet, EvalSet, EvalSet]:
        """The fold's training, validation (held-out training speakers, no augmented copies) and test windows;
        ``features.normalize=global`` statistics from the training rows."""
        assert self.data is not None, "prepare() first"
        cfg, data = self.cfg, self.data
        bank, manifest, y_utt = data.bank, data.manifest, data.y_utt
        train_rows = plan.train
        speakers = np.array([manifest[i].speaker for i in train_rows])
        is_aug = np.array([manifest[i].augmented_from is not None for i in train_rows])
        val_mask = split_validation_speakers(
            speakers, y_utt[train_rows], float(cfg.trainer.val_speaker_fraction), int(cfg.seed) + plan.fold
        )
        fit_rows, val_rows = train_rows[~val_mask], train_rows[val_mask & ~is_aug]
        if cfg.features.normalize == "global":
            m = np.zeros(bank.n_utts, dtype=bool)
            m[fit_rows] = True
            bank.set_global_norm(m)
        unseen = sorted(set(y_utt[plan.test].tolist()) - set(y_utt[fit_rows].tolist()))
        if unseen:
            log.warning(
                "fold %d: class(es) %s occur in the test speakers but not in training; the CNN cannot predict "
                "them in this fold (they still count in UAR)",
                plan.fold,
                [data.classes[c] for c in unseen],
            )
        return eval_set(bank, fit_rows, y_utt), eval_set(bank, val_rows, y_utt), eval_set(bank, plan.test, y_utt)

    def _train(
        self,
        plan: FoldPlan,
        model: Any,
        train_set: EvalSet,
        val_set: EvalSet,
        log_epoch: Callable[[int, dict[str, float]], None],
    ) -> FitResult:
        """Transfer layers (when configured) and train ``model``, with a progress bar and a checkpoint per epoch."""
        assert self.data is not None, "prepare() first"
        cfg = self.cfg
        frozen: list[str] = []
        lr_start = None
        scales = dict(model.lr_scales()) if hasattr(model, "lr_scales") else {}
        if self.source is not None:
            frozen = apply_transfer(model, cfg, self.source)
            lr_start = cfg.transfer.lr_start
            scales |= dict.fromkeys(frozen, float(cfg.transfer.lr_scale))
        elif is_encoder_transfer(cfg):
            frozen, lr_start = list(scales), cfg.transfer.lr_start  # the fine-tuned encoder layers
        bar = self.progress.bar(int(cfg.trainer.epochs), f"fold {plan.fold}")

        def on_epoch(epoch: int, m: dict[str, float]) -> None:
            bar.update(1, **{k: m[k] for k in ("train_loss", "val_uar") if k in m})
            log.info("fold %d epoch %d: %s", plan.fold, epoch, " ".join(f"{k}={v:.4g}" for k, v in m.items()))

        options = FitOptions(
            reporter=_Tracked(log_epoch, self.reporter),
            fold=plan.fold,
            seed=int(cfg.seed),
            device=self.device,
            checkpoint=self.checkpoints / f"fold{plan.fold}.pt" if self.checkpoints is not None else None,
            progress=on_epoch,
            frozen=frozen,
            freeze_epochs=int(cfg.transfer.freeze_epochs),
            lr_start=lr_start,
            lr_scales={k: v for k, v in scales.items() if v != 1.0},
        )
        result = fit(model, self.data.bank, train_set.idx, train_set.y, val_set, cfg.trainer, options)
        bar.close()
        return result

    def _vote(
        self, plan: FoldPlan, model: Any, val_set: EvalSet, test_set: EvalSet
    ) -> tuple[dict[str, np.ndarray], dict[str, float], np.ndarray, np.ndarray | None]:
        """Every voting method fitted on the validation windows and applied to the test utterances: the scores per
        method, the vote diagnostics, the test windows' posteriors and the test utterances' embeddings."""
        assert self.data is not None, "prepare() first"
        cfg, device, bank = self.cfg, self.device, self.data.bank
        dtype = resolve_precision(cfg.trainer.precision, device)
        cl = bool(cfg.trainer.channels_last)
        ebs = eval_batch_size(cfg.trainer, device)
        p_val, _ = predict_windows(model, bank, val_set.idx, ebs, device, dtype, cl)
        utt, n_utts = test_set.utt, test_set.n_utts
        p_test, emb_utt = predict_windows(
            model, bank, test_set.idx, ebs, device, dtype, cl, embeddings=True, groups=utt, n_groups=n_utts
        )
        energy = bank.window_energy()
        e_val, e_test = energy[to_numpy(val_set.idx)], energy[to_numpy(test_set.idx)]
        alpha, use_energy = float(cfg.aggregation.ridge_alpha), bool(cfg.aggregation.use_energy)
        y_val = to_numpy(val_set.y)
        scores = {}
        for method in self.methods:
            ridge = method in ("weighted", "weighted_soft")
            params: dict[str, Any] = {"alpha": alpha, "use_energy": use_energy} if ridge else {}
            agg = make_aggregator(method, **params).fit(p_val, y_val, val_set.utt, e_val)
            scores[method] = agg.predict_proba(p_test, utt, e_test, n_groups=n_utts)
            if method == self.primary:
                self.states[plan.fold] = fold_state(method, agg, bank.mean, bank.std)
        diagnostics = vote_diagnostics(
            p_val=p_val,
            y_val=y_val,
            e_val=e_val,
            p_test=p_test,
            y_test=to_numpy(test_set.y),
            utt_test=utt,
            e_test=e_test,
            n_utts=n_utts,
            alpha=alpha,
            use_energy=use_energy,
        )
        return scores, diagnostics, p_test, emb_utt

    def log_model(self, tracker: RunTracker, tmp: Path) -> None:
        """``model/``: every fold's weights and voting state, and the spec (:mod:`paraling.tracking.model_dir`)."""
        assert self.data is not None, "prepare() first"
        cfg = self.cfg
        features = _plain(cfg.features)
        identity = getattr(self.data.spec, "identity", None)
        if identity:  # predict refuses another encoder at features.model
            features["encoder_id"] = str(identity)
        spec = ModelSpec(
            classes=list(self.data.classes),
            n_mels=self.data.bank.n_mels,
            features=features,
            windows=_plain(cfg.windows),
            model=_plain(cfg.model),
            aggregation=_plain(cfg.aggregation),
            folds=sorted(self.models),
            layer_names=layer_names(next(iter(self.models.values()))) if self.models else [],
            # how the out-of-fold scores were computed, so that `paraling predict` reproduces them
            precision="bf16" if resolve_precision(str(cfg.trainer.precision), self.device) else "fp32",
            channels_last=bool(cfg.trainer.channels_last),
        )
        weights = {k: m.state_dict() for k, m in self.models.items()}
        folder = save_model_dir(tmp / "model", spec, weights, self.states)
        tracker.log_artifact(folder, "model")
        if tracker.enabled and tracker.run_id:
            tags = {"paraling.corpus": str(cfg.corpus.name), "paraling.seed": str(cfg.seed)}
            link_logged_model(tracker.client, str(tracker.experiment_id), tracker.run_id, folder, str(cfg.name), tags)


def _plain(node: Any) -> dict[str, Any]:
    out = OmegaConf.to_container(node, resolve=True)
    assert isinstance(out, dict)
    return {str(k): v for k, v in out.items()}


class _Tracked:
    """Per-epoch metrics to the run (``log_epoch``) and then to the caller's reporter, which may prune."""

    def __init__(self, log_epoch: Callable[[int, dict[str, float]], None], inner: Reporter | None) -> None:
        self.log_epoch, self.inner = log_epoch, inner

    def on_epoch_end(self, fold: int, epoch: int, metrics: dict[str, float]) -> None:
        self.log_epoch(epoch, metrics)
        if self.inner is not None:
            self.inner.on_epoch_end(fold, epoch, metrics)
