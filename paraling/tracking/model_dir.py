"""The model folder a CNN run logs as ``model/``: one writer (:func:`save_model_dir`), one reader (:class:`ModelDir`).

Format ``paraling-model/1``:

- ``spec.json``: ``format``, ``classes``, ``n_mels``, the ``features``, ``windows``, ``model`` and ``aggregation``
  config the run trained with, ``folds``, ``layer_names``, and how its out-of-fold scores were computed
  (``precision`` ``fp32`` | ``bf16``, ``channels_last``), so that ``paraling predict`` reproduces them;
- per fold ``k``: ``fold<k>.safetensors`` (the CNN's weights) and ``fold<k>.json`` (the fitted vote and the fold's
  feature normalisation, :mod:`paraling.scoring.aggregation_state`).

``spec.json`` is written last: a folder without it is not a model. Folders written before the format had a name (no
``format`` key) read as ``paraling-model/1``: their missing keys take the values those runs used (``fp32``, no
channels-last, the weighted vote). A newer format is refused with a message that says to upgrade paraling.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from paraling.atomic import atomic_path
from paraling.config_compat import legacy_node
from paraling.errors import ModelError

__all__ = [
    "MODEL_FORMAT",
    "SPEC_FILE",
    "ModelDir",
    "ModelSpec",
    "missing_files",
    "read_spec",
    "save_model_dir",
    "state_name",
    "weights_name",
]

MODEL_FORMAT = "paraling-model/1"
SPEC_FILE = "spec.json"


def weights_name(fold: int) -> str:
    """File name of fold ``fold``'s weights."""
    return f"fold{fold}.safetensors"


def state_name(fold: int) -> str:
    """File name of fold ``fold``'s fitted vote and normalisation."""
    return f"fold{fold}.json"


@dataclass(frozen=True)
class ModelSpec:
    """What ``spec.json`` says about a model folder.

    Attributes:
        classes: Class names, in the order of the networks' outputs.
        n_mels: Feature bands.
        features: The ``features`` config.
        windows: The ``windows`` config (``width``, ``shift``, ``short_policy``).
        model: The ``model`` config (``name``, depth, channels, ...).
        aggregation: The ``aggregation`` config (``method``, ...).
        folds: The folds whose networks the folder holds.
        layer_names: The networks' layer names (transfer learning selects by them).
        precision: ``fp32`` or ``bf16``: how the out-of-fold scores were computed.
        channels_last: Whether they were computed in channels-last layout.
    """

    classes: list[str]
    n_mels: int
    features: dict[str, Any]
    windows: dict[str, Any]
    model: dict[str, Any]
    aggregation: dict[str, Any] = field(default_factory=dict)
    folds: list[int] = field(default_factory=list)
    layer_names: list[str] = field(default_factory=list)
    precision: str = "fp32"
    channels_last: bool = False

    @property
    def method(self) -> str:
        """The voting method the run used (``aggregation.kind``; ``method`` in folders of earlier releases)."""
        return str(self.aggregation.get("kind") or self.aggregation.get("method") or "weighted")

    @property
    def model_kind(self) -> str:
        """``model.kind`` (``name`` in folders of earlier releases; ``cnn`` when neither is there)."""
        return str(self.model.get("kind") or self.model.get("name") or "cnn")

    @property
    def is_cnn(self) -> bool:
        """Whether the folder holds window models (the models that predict from audio: the CNN or one of yours)."""
        from paraling.models import MODELS

        kind = self.model_kind
        return kind in MODELS and MODELS.entry(kind).info.get("level") == "window"

    def to_dict(self) -> dict[str, Any]:
        """The ``spec.json`` contents, with the format name."""
        return {
            "format": MODEL_FORMAT,
            "classes": list(self.classes),
            "n_mels": int(self.n_mels),
            "features": dict(self.features),
            "windows": dict(self.windows),
            "model": dict(self.model),
            "aggregation": dict(self.aggregation),
            "folds": [int(k) for k in self.folds],
            "layer_names": list(self.layer_names),
            "precision": self.precision,
            "channels_last": bool(self.channels_last),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = SPEC_FILE) -> ModelSpec:
        """Validate a parsed ``spec.json`` (``where`` names it in errors).

        Raises:
            ModelError: Missing or mistyped keys, or a format this paraling does not read.
        """
        fmt = d.get("format", MODEL_FORMAT)  # folders written before the format had a name: version 1 contents
        if fmt != MODEL_FORMAT:
            raise ModelError(
                f"{where}: model format {fmt!r}; this paraling reads {MODEL_FORMAT!r} -- upgrade paraling to load it"
            )
        try:
            spec = cls(
                classes=[str(c) for c in d["classes"]],
                n_mels=int(d["n_mels"]),
                features=dict(d["features"]),
                windows=dict(d["windows"]),
                model=dict(d["model"]),
                aggregation=dict(d.get("aggregation") or {}),
                folds=[int(k) for k in d.get("folds", [])],
                layer_names=[str(n) for n in d.get("layer_names") or []],
                precision=str(d.get("precision", "fp32")),
                channels_last=bool(d.get("channels_last", False)),
            )
            geometry = (int(spec.windows["width"]), int(spec.windows.get("shift", 1)), spec.n_mels)
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"{where}: not a valid paraling spec ({exc!r}); re-log the run's model") from None
        if min(geometry) < 1:
            raise ModelError(
                f"{where}: windows.width, windows.shift and n_mels must be >= 1, got {geometry}; re-log the run's model"
            )
        if len(spec.classes) < 2 or len(set(spec.classes)) != len(spec.classes):
            raise ModelError(f"{where}: 'classes' must name at least two distinct classes, got {spec.classes}")
        if not spec.model:
            raise ModelError(f"{where}: 'model' is empty; re-log the run's model")
        if spec.precision not in ("fp32", "bf16"):
            raise ModelError(f"{where}: precision {spec.precision!r} is neither fp32 nor bf16")
        model, aggregation = legacy_node("model", spec.model), legacy_node("aggregation", spec.aggregation)
        return replace(spec, model=model, aggregation=aggregation)


def read_spec(path: str | Path) -> ModelSpec:
    """Read and validate a ``spec.json`` file.

    Raises:
        ModelError: Unreadable, not JSON, or not a valid spec.
    """
    p = Path(path)
    try:
        d = json.loads(p.read_text())
    except (OSError, ValueError) as exc:
        raise ModelError(f"{p}: cannot read the model spec ({exc}); re-log the run's model") from None
    if not isinstance(d, dict):
        raise ModelError(f"{p}: not a paraling model spec (a JSON object is expected)")
    return ModelSpec.from_dict(d, str(p))


def save_model_dir(
    out: str | Path,
    spec: ModelSpec,
    weights: Mapping[int, Mapping[str, torch.Tensor]],
    states: Mapping[int, Mapping[str, Any]],
) -> Path:
    """Write a model folder: every fold's weights and state, then ``spec.json``.

    Args:
        out: The folder (created; must not hold a model yet).
        spec: Its spec; ``spec.folds`` must equal the folds of ``weights`` and ``states``.
        weights: Per fold, the network's state dict.
        states: Per fold, :func:`paraling.scoring.aggregation_state.fold_state`'s dict.

    Returns:
        ``out``.
    """
    from safetensors.torch import save_file

    out = Path(out)
    if sorted(weights) != sorted(spec.folds) or sorted(states) != sorted(spec.folds):
        raise ValueError(f"folds {spec.folds} vs weights for {sorted(weights)} and states for {sorted(states)}")
    out.mkdir(parents=True, exist_ok=True)
    if (out / SPEC_FILE).exists():
        raise FileExistsError(f"{out / SPEC_FILE} exists: a model folder is written once")
    for k in spec.folds:
        with atomic_path(out / weights_name(k)) as tmp:
            save_file({n: t.detach().cpu().contiguous() for n, t in weights[k].items()}, str(tmp))
        with atomic_path(out / state_name(k)) as tmp:
            tmp.write_text(json.dumps(dict(states[k])))
    with atomic_path(out / SPEC_FILE) as tmp:
        tmp.write_text(json.dumps(spec.to_dict(), indent=2))
    return out


def missing_files(spec: ModelSpec, files: set[str]) -> str:
    """Why a folder listing ``files`` (names relative to it) cannot be scored from audio, or ``""``."""
    if not spec.is_cnn:
        return f"model {spec.model_kind!r} is not a window model (it cannot predict from audio)"
    for k in spec.folds:
        if weights_name(k) not in files:
            return f"{weights_name(k)} missing"
        if state_name(k) not in files:
            return f"{state_name(k)} (fitted vote) missing: logged before paraling saved it; re-run it"
    return ""


class ModelDir:
    """A model folder on disk: its :class:`ModelSpec` and, per fold, weights and saved state.

    Args:
        path: The folder.
        spec: Its spec (see :meth:`load`).
    """

    def __init__(self, path: Path, spec: ModelSpec) -> None:
        self.path, self.spec = path, spec

    @classmethod
    def load(cls, path: str | Path) -> ModelDir:
        """Read ``path/spec.json``.

        Raises:
            ModelError: No ``spec.json`` or an invalid one.
        """
        p = Path(path)
        if not (p / SPEC_FILE).is_file():
            raise ModelError(f"{p}: no {SPEC_FILE}; point at a paraling run's model/ folder, a bundle or a run")
        return cls(p, read_spec(p / SPEC_FILE))

    def weights(self, fold: int) -> dict[str, torch.Tensor]:
        """Fold ``fold``'s state dict (on the CPU).

        Raises:
            ModelError: The fold is not in the spec, or its file is missing or unreadable.
        """
        from safetensors.torch import load_file

        f = self.path / weights_name(fold)
        if fold not in self.spec.folds:
            raise ModelError(f"{self.path}: logged folds {self.spec.folds}, not fold {fold}")
        if not f.is_file():
            raise ModelError(f"{self.path}: {f.name} is missing")
        try:
            return load_file(str(f))
        except (OSError, RuntimeError, ValueError) as exc:
            raise ModelError(f"{f}: unreadable weights ({exc})") from exc

    def state_path(self, fold: int) -> Path | None:
        """Fold ``fold``'s saved vote and normalisation file, or ``None`` where it was never saved."""
        f = self.path / state_name(fold)
        return f if f.is_file() else None
