"""Prediction on new audio with trained CNNs: one ``paraling train`` run or a weighted ensemble of them.

A *member* is what one ``paraling train`` run logs under ``model/``: ``spec.json`` (classes, feature, window,
model and aggregation config) and per fold ``fold<k>.safetensors`` (CNN weights) plus ``fold<k>.json`` (the
voting estimator fitted on that fold's validation speakers and, with ``features.normalize=global``, the fold's
feature mean/std). Each fold's CNN with its own fitted vote is a complete classifier (exactly what scored
that fold's utterances out-of-fold), so a member's utterance probabilities are the mean over its folds of
``vote_k(cnn_k(windows))``.

A *bundle* is a folder with ``bundle.json`` (classes, combiner, members with integer weights) and one member
folder per run under ``members/``; an ensemble combines its members' utterance probabilities with
:func:`paraling.ensemble.combine`. :class:`Predictor` loads a bundle, a member folder, or an MLflow pyfunc
folder that holds a bundle (see :mod:`paraling.tracking.registry`); everything is read from JSON and safetensors (no
pickle).

Audio goes through :func:`paraling.data.audio.load_audio` and :func:`paraling.features.extract_logmel` exactly
as in training (mono mix-down, resampling to the feature rate). A file that cannot be decoded or is too short
for a member's windows yields a row with ``error`` set; the rest of the batch is predicted.

Example:
    >>> p = Predictor.load("mlruns-download/model")  # doctest: +SKIP
    >>> rows = p.predict(["a.wav", "b.wav"])  # doctest: +SKIP
    >>> predictions_frame(rows, p.classes)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

from paraling.data.audio import load_audio
from paraling.data.windows import WindowBank
from paraling.device import resolve_device, to_numpy
from paraling.ensemble import COMBINERS, combine
from paraling.errors import ConfigError, ModelError, ParalingError
from paraling.features import Extractor, make_extractor
from paraling.models import build_window_model
from paraling.models.cnn import WindowCNN
from paraling.scoring.aggregation import Aggregator, make_aggregator
from paraling.scoring.aggregation_state import fold_file
from paraling.serving.prediction_table import predictions_frame, write_predictions
from paraling.tracking.bundle import BUNDLE_FILE, BUNDLE_FORMAT, read_bundle
from paraling.tracking.model_dir import SPEC_FILE, ModelDir, state_name, weights_name
from paraling.training.loop import predict_windows

__all__ = [
    "BUNDLE_FILE",
    "BUNDLE_FORMAT",
    "CNNMember",
    "FilePrediction",
    "MemberDetail",
    "Predictor",
    "predictions_frame",
    "write_predictions",
]

log = logging.getLogger(__name__)


# --- one member: the fold CNNs of a training run ------------------------------------------------------------


@dataclass
class _Fold:
    fold: int
    model: WindowCNN
    aggregator: Aggregator
    mean: torch.Tensor | None
    std: torch.Tensor | None


@dataclass
class MemberDetail:
    """Per-window view of one file under one member (for ``--explain``).

    Attributes:
        feats: Log-mel features as extracted (before normalisation), shape ``(frames, n_mels)``.
        starts: First frame of each window, shape ``(n_windows,)``.
        window_proba: Class posteriors averaged over the fold CNNs, shape ``(n_windows, n_classes)``.
        vote_weight: Vote weight averaged over folds (Ridge weights of the weighted vote; 1 for majority, the
            posterior of the window's argmax for mean votes), shape ``(n_windows,)``.
        contribution: Each window's average contribution to each class's vote,
            shape ``(n_windows, n_classes)``.
        embedding: The first fold CNN's last hidden layer per window, shape ``(n_windows, embed_dim)``.
        proba: The member's utterance probabilities, shape ``(n_classes,)``.
    """

    feats: np.ndarray
    starts: np.ndarray
    window_proba: np.ndarray
    vote_weight: np.ndarray
    contribution: np.ndarray
    embedding: np.ndarray
    proba: np.ndarray


def _frontend(name: str, features: dict[str, Any], device: str = "cpu") -> Extractor:
    """The member's feature extractor, checked now: a pre-trained encoder that is missing here, or another one than
    the member was trained on (``features.encoder_id``), fails at load with the fix, not at the first file."""
    try:
        frontend = make_extractor({**features, "device": "auto"}, device=device)  # where this prediction runs
        if features.get("encoder_id"):
            _ = frontend.n_features  # reads the encoder's config and checks its identity
    except ConfigError as exc:
        raise ModelError(
            f"member {name}: its encoder {features.get('encoder_id')} is not available here ({exc}). Fix: put that "
            f"encoder where features.model points ({features.get('model')!r}; a hub id needs the hub or its cache)"
        ) from None
    return frontend


class CNNMember:
    """The fold CNNs and fitted votes of one ``paraling train`` run, loaded from its ``model/`` folder.

    Args:
        name: Run id or folder name, used in messages.
        spec: Contents of ``spec.json``.
        folds: Loaded fold models.
        frontend: The feature extractor the folds were built with (default: the one ``spec`` describes).
    """

    def __init__(self, name: str, spec: dict[str, Any], folds: list[_Fold], frontend: Extractor | None = None) -> None:
        self.name, self.spec, self.folds = name, spec, folds
        self.classes: list[str] = list(spec["classes"])
        self.feature_spec: Extractor = frontend if frontend is not None else make_extractor(spec["features"])
        self.normalize = str(spec["features"].get("normalize", "utterance"))
        win = spec["windows"]
        self.width, self.shift = int(win["width"]), int(win["shift"])
        self.short_policy = str(win.get("short_policy", "pad"))
        agg = spec.get("aggregation", {})
        self.method = str(agg.get("kind") or agg.get("method") or "weighted")
        # the precision and layout the run's out-of-fold scores were computed with (fp32 for older runs)
        self.dtype = torch.bfloat16 if spec.get("precision") == "bf16" else None
        self.channels_last = bool(spec.get("channels_last", False))

    @classmethod
    def load(cls, directory: str | Path, name: str | None = None, device: str = "cpu") -> CNNMember:
        """Load a run's ``model/`` folder (:class:`~paraling.tracking.model_dir.ModelDir`): spec and every fold.

        Raises:
            ModelError: Missing files, a non-CNN spec, weights that do not fit the spec, or a weighted vote /
                global normalisation whose fitted state was not saved (runs logged before paraling saved it).
        """
        folder = ModelDir.load(directory)
        spec = folder.spec
        name = name or folder.path.name
        if not spec.is_cnn:
            raise ModelError(f"member {name}: model {spec.model_kind!r} cannot predict from audio")
        frontend = _frontend(name, spec.features, device)
        folds = []
        for k in spec.folds:
            state = folder.weights(k)
            try:
                model = build_window_model(
                    SimpleNamespace(**spec.model),
                    spec.n_mels,
                    int(spec.windows["width"]),
                    len(spec.classes),
                    frontend,
                )
            except ModelError as exc:
                raise ModelError(f"member {name}: {folder.path / SPEC_FILE}: {exc}; re-log the run's model") from None
            try:
                model.load_state_dict(state)
            except RuntimeError as exc:
                raise ModelError(f"member {name}: {weights_name(k)} does not fit its {SPEC_FILE} ({exc})") from exc
            model.eval()
            mean = std = None
            state_file = folder.state_path(k)
            if state_file is not None:
                agg, mean, std = fold_file(state_file, spec.n_mels, len(spec.classes))
            elif not spec.method.startswith("weighted"):
                agg = make_aggregator(spec.method)
                agg.n_classes_ = len(spec.classes)
            else:
                raise ModelError(
                    f"member {name}: the fitted {spec.method} vote of fold {k} was not saved "
                    f"({state_name(k)} missing); "
                    "re-run the experiment with this paraling version"
                )
            if spec.features.get("normalize") == "global" and mean is None:
                raise ModelError(
                    f"member {name}: fold {k} uses features.normalize=global but its statistics "
                    "were not saved; re-run the experiment with this paraling version"
                )
            folds.append(_Fold(int(k), model, agg, mean, std))
        if not folds:
            raise ModelError(f"member {name}: {SPEC_FILE} lists no folds")
        return cls(name, spec.to_dict(), folds, frontend)  # the models' front-end extracts their features too

    def window_times(self, starts: np.ndarray, duration: float) -> tuple[np.ndarray, np.ndarray]:
        """Start and end seconds of windows beginning at frames ``starts`` (clipped to ``duration``)."""
        s = self.feature_spec
        hop, win = s.frame_shift_ms / 1000.0, s.frame_length_ms / 1000.0
        begin = np.asarray(starts, dtype=np.float64) * hop
        end = (np.asarray(starts, dtype=np.float64) + self.width - 1) * hop + win
        return np.minimum(begin, duration), np.minimum(end, duration)

    def too_short(self, n_frames: int) -> str | None:
        """Why a file of ``n_frames`` frames cannot be scored by this member, or ``None``."""
        if n_frames >= self.width or self.short_policy == "pad":
            return None
        return (
            f"{n_frames} frames is shorter than the {self.width}-frame window of member {self.name} "
            f"(windows.short_policy={self.short_policy})"
        )

    def analyse(
        self, feats: Sequence[np.ndarray], energies: Sequence[np.ndarray], device: torch.device, details: bool = False
    ) -> tuple[np.ndarray, list[MemberDetail]]:
        """Utterance probabilities of files (and optionally their per-window view).

        Args:
            feats: Per file, log-mel features ``(frames, n_mels)`` of :attr:`feature_spec`.
            energies: Per file, frame log energy ``(frames,)``.
            device: Where the CNNs run.
            details: Also return a :class:`MemberDetail` per file.

        Returns:
            ``(proba (n_files, n_classes), details)``.
        """
        n, n_cls = len(feats), len(self.classes)
        bank = WindowBank(list(feats), list(energies), self.width, self.shift, "pad", self.normalize)
        idx = torch.arange(bank.n_windows)
        utt = to_numpy(bank.utt)
        energy = bank.window_energy()
        proba = np.zeros((n, n_cls))
        wp = np.zeros((bank.n_windows, n_cls))
        weight = np.zeros(bank.n_windows)
        contrib = np.zeros((bank.n_windows, n_cls))
        emb0: np.ndarray | None = None
        for i, f in enumerate(self.folds):
            f.model.to(device)
            bank.mean, bank.std = f.mean, f.std
            p, emb = predict_windows(
                f.model, bank, idx, 2048, device, self.dtype, self.channels_last, embeddings=details and i == 0
            )
            emb0 = emb if emb is not None else emb0
            proba += f.aggregator.predict_proba(p, utt, energy, n_groups=n)
            if details:
                w = self._vote_weight(f.aggregator, p, energy)
                wp += p
                weight += w
                if self.method in ("mean", "logmean"):
                    contrib += p  # every class receives the window's posterior
                else:
                    contrib[np.arange(len(p)), p.argmax(1)] += w  # a vote for the window's argmax
        proba /= len(self.folds)
        out: list[MemberDetail] = []
        if details:
            k = len(self.folds)
            rel = to_numpy(bank.starts) - bank.offsets[utt]
            for j in range(n):
                m = utt == j
                emb = emb0[m] if emb0 is not None else np.zeros((int(m.sum()), 0))
                out.append(
                    MemberDetail(np.asarray(feats[j]), rel[m], wp[m] / k, weight[m] / k, contrib[m] / k, emb, proba[j])
                )
        return proba, out

    def _vote_weight(self, agg: Aggregator, p: np.ndarray, energy: np.ndarray) -> np.ndarray:
        if hasattr(agg, "weights_for"):
            return agg.weights_for(p, energy if getattr(agg, "use_energy", False) else None)
        if self.method == "majority":
            return np.ones(len(p))
        return p.max(axis=1)


# --- predictor over a bundle --------------------------------------------------------------------------------


@dataclass
class FilePrediction:
    """One file's ``label`` and ``proba`` (``(n_classes,)``), or ``error`` when it could not be scored."""

    path: str
    label: str | None = None
    proba: np.ndarray | None = None
    error: str | None = None
    duration: float = 0.0
    details: dict[str, MemberDetail] = field(default_factory=dict)


def _find_bundle(path: Path) -> Path:
    for cand in (path, path / "artifacts" / "bundle", path / "bundle"):
        if (cand / BUNDLE_FILE).is_file() or (cand / SPEC_FILE).is_file():
            return cand
    raise ModelError(f"{path}: not a paraling model (no {BUNDLE_FILE}, spec.json or pyfunc artifacts/bundle)")


class Predictor:
    """Members, their integer weights and the combiner: everything needed to label audio files.

    Args:
        members: Loaded CNN members (same classes in the same order).
        weights: Integer weight per member.
        combiner: One of :data:`paraling.ensemble.COMBINERS`.
        device: ``auto`` (CUDA when present), ``cpu``, ``cuda``...
    """

    def __init__(
        self,
        members: Sequence[CNNMember],
        weights: Sequence[int] | None = None,
        combiner: str = "mean",
        device: str = "cpu",
    ) -> None:
        if not members:
            raise ModelError("a predictor needs at least one member")
        if combiner not in COMBINERS:
            raise ModelError(f"unknown combiner {combiner!r}; choose one of {', '.join(COMBINERS)}")
        self.members = list(members)
        self.weights = np.asarray(weights if weights is not None else [1] * len(members), dtype=np.float64)
        self.combiner = combiner
        self.classes = self.members[0].classes
        for m in self.members[1:]:
            if m.classes != self.classes:
                raise ModelError(
                    f"members {self.members[0].name} and {m.name} have different classes: {self.classes} vs {m.classes}"
                )
        self.device = resolve_device(device)

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu", name: str | None = None) -> Predictor:
        """Load a bundle folder, a run's ``model/`` folder, or a pyfunc model folder holding a bundle.

        Args:
            path: The folder.
            device: Where the CNNs run.
            name: Name of a single member (e.g. its run id); default the folder name.
        """
        d = _find_bundle(Path(path))
        if not (d / BUNDLE_FILE).is_file():
            return cls([CNNMember.load(d, name, device)], [1], "mean", device)
        bundle = read_bundle(d)
        members = [CNNMember.load(m.path, m.run_id, device) for m in bundle.members]
        return cls(members, [m.weight for m in bundle.members], bundle.combiner, device)

    def predict(self, paths: Sequence[str | Path], details: bool = False, chunk: int = 64) -> list[FilePrediction]:
        """Label files; unreadable or too-short files get ``error`` and do not stop the batch.

        Args:
            paths: Audio files.
            details: Keep each member's per-window view (:class:`MemberDetail`) for explanations.
            chunk: Files decoded and scored together.

        Returns:
            One :class:`FilePrediction` per path, in order.
        """
        out: list[FilePrediction] = []
        for lo in range(0, len(paths), chunk):
            out.extend(self._predict_chunk([str(p) for p in paths[lo : lo + chunk]], details))
        return out

    def _predict_chunk(self, paths: list[str], details: bool) -> list[FilePrediction]:
        preds = [FilePrediction(p) for p in paths]
        feats: dict[str, dict[int, tuple[np.ndarray, np.ndarray]]] = {}
        extractors = {m.feature_spec.key(): m.feature_spec for m in self.members}  # members sharing one extract once
        for key, spec in extractors.items():
            feats[key] = {}
            for i, pr in enumerate(preds):
                if pr.error:
                    continue
                try:
                    wave = load_audio(pr.path, spec.sample_rate)
                    feats[key][i] = spec.extract(wave)
                    pr.duration = len(wave) / spec.sample_rate
                except (ParalingError, OSError, ValueError, RuntimeError) as exc:
                    pr.error = str(exc)
        for m in self.members:
            for i, (f, _) in feats[m.feature_spec.key()].items():
                why = m.too_short(len(f))
                if why and not preds[i].error:
                    preds[i].error = why
        ok = [i for i, pr in enumerate(preds) if not pr.error]
        if not ok:
            return preds
        stack = np.zeros((len(self.members), len(ok), len(self.classes)))
        with torch.no_grad():
            for j, m in enumerate(self.members):
                fe = feats[m.feature_spec.key()]
                stack[j], det = m.analyse([fe[i][0] for i in ok], [fe[i][1] for i in ok], self.device, details)
                for i, dt in zip(ok, det, strict=False):
                    preds[i].details[m.name] = dt
        final = combine(stack, self.weights, self.combiner)
        for i, row in zip(ok, final, strict=True):
            preds[i].proba = row
            preds[i].label = self.classes[int(row.argmax())]
        return preds
