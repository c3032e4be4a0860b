"""The saved state of the voting estimators and of a fold's normalisation: ``model/fold<k>.json``.

Written by training (:func:`fold_state`), read back field by field by every loader (:func:`fold_file`,
:func:`aggregator_from_state`): a damaged or edited file is one :class:`~paraling.errors.ModelError` naming the file
and the field, never an object or a replaced method.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from paraling.errors import ModelError, ParalingError
from paraling.scoring.aggregation import Aggregator, make_aggregator

__all__ = ["aggregator_from_state", "aggregator_state", "fold_file", "fold_state"]


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def aggregator_state(method: str, aggregator: Aggregator) -> dict[str, Any]:
    """JSON-serialisable state of a fitted voting estimator: its method, parameters and learned attributes.

    Args:
        method: The name it was built with (:data:`paraling.scoring.aggregation.METHODS`).
        aggregator: A fitted estimator from :func:`paraling.scoring.aggregation.make_aggregator`.

    Returns:
        ``{"method": ..., "params": {...}, "fitted": {"n_classes_": ..., "coef_": [[...]], ...}}``.
    """
    fitted = {k: _jsonable(v) for k, v in vars(aggregator).items() if k.endswith("_") and not k.startswith("_")}
    return {"method": method, "params": {k: _jsonable(v) for k, v in aggregator.get_params().items()}, "fitted": fitted}


_PLAIN = (int, float, str, bool, list, type(None))


def aggregator_from_state(
    state: Any, where: str = "saved aggregator state", n_classes: int | None = None
) -> Aggregator:
    """Rebuild a fitted estimator from :func:`aggregator_state`'s output, validating every field first.

    Only the estimator's own parameters and learned attributes (names ending in ``_``, never a method's name) with
    plain JSON values are accepted, so a tampered file cannot replace a method or smuggle in an object. With
    ``n_classes``, the learned state must also fit that many classes (class count, coefficient shapes, finite values).

    Raises:
        ModelError: Naming ``where`` and the field that is wrong.
    """

    def bad(why: str) -> ModelError:
        return ModelError(f"{where}: {why}; the model file is damaged or was edited: re-log the run's model")

    if not isinstance(state, dict) or not isinstance(state.get("method"), str):
        raise bad("expected an object with a 'method' name")
    try:
        est = make_aggregator(state["method"])
    except (KeyError, ValueError, ParalingError) as exc:
        raise bad(f"unknown method {state['method']!r} ({exc})") from None
    params, fitted = state.get("params", {}), state.get("fitted", {})
    if not isinstance(params, dict) or not isinstance(fitted, dict):
        raise bad("'params' and 'fitted' must be objects")
    allowed = est.get_params()
    for k, v in params.items():
        if k not in allowed or not isinstance(v, _PLAIN):
            raise bad(f"unexpected parameter {k}={v!r}")
    for k, v in fitted.items():
        if not (k.endswith("_") and not k.startswith("_")) or callable(getattr(type(est), k, None)):
            raise bad(f"{k!r} is not a learned attribute")
        if not isinstance(v, _PLAIN):
            raise bad(f"{k} has a value of type {type(v).__name__}")
    if not isinstance(fitted.get("n_classes_", 2), int) or fitted.get("n_classes_", 2) < 2:
        raise bad(f"n_classes_ must be a whole number >= 2, not {fitted.get('n_classes_')!r}")
    try:
        est.set_params(**params)
        for k, v in fitted.items():
            setattr(est, k, np.asarray(v, dtype=np.float64) if isinstance(v, list) else v)
    except (TypeError, ValueError) as exc:
        raise bad(str(exc)) from None
    if n_classes is not None:
        try:
            est.check_fitted(n_classes)
        except (TypeError, ValueError) as exc:
            raise bad(str(exc)) from None
    return est


def fold_state(
    method: str, aggregator: Aggregator, mean: torch.Tensor | None = None, std: torch.Tensor | None = None
) -> dict[str, Any]:
    """What ``model/fold<k>.json`` holds: the fold's fitted vote and global feature normalisation or null."""
    norm = None
    if mean is not None and std is not None:
        norm = {"mean": mean.detach().cpu().tolist(), "std": std.detach().cpu().tolist()}
    return {"aggregation": aggregator_state(method, aggregator), "norm": norm}


def fold_file(
    path: Path, n_mels: int, n_classes: int | None = None
) -> tuple[Aggregator, torch.Tensor | None, torch.Tensor | None]:
    """Read and validate ``fold<k>.json``: the fitted vote (fitting ``n_classes`` classes when given) and the global
    normalisation (or none)."""
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelError(f"{path}: not readable JSON ({exc}); re-log the run's model") from None
    if not isinstance(state, dict):
        raise ModelError(f"{path}: expected a JSON object; re-log the run's model")
    agg = aggregator_from_state(state.get("aggregation"), str(path), n_classes)
    norm = state.get("norm")
    if not norm:
        return agg, None, None
    ok = isinstance(norm, dict) and all(
        isinstance(norm.get(k), list)
        and len(norm[k]) == n_mels
        and all(isinstance(x, int | float) and not isinstance(x, bool) and np.isfinite(x) for x in norm[k])
        for k in ("mean", "std")
    )
    if not ok:
        raise ModelError(f"{path}: 'norm' must hold {n_mels} numbers in 'mean' and 'std'; re-log the run's model")
    return agg, torch.tensor(norm["mean"], dtype=torch.float32), torch.tensor(norm["std"], dtype=torch.float32)
