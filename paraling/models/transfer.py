"""Transfer learning, the model side: pick layers by name and copy them from a source state dict into a CNN.

``transfer.layers`` picks what is copied:

- a list of names (``[conv1, conv2, conv3]``): every name must exist in both models with identical shapes, else
  :class:`~paraling.errors.TransferError` names the layer and both shapes;
- ``conv``: every convolution layer of the target, checked like a list (conv-only transfer, Table 1 net5);
- ``all`` (or ``[all]``): the naive transfer (net4), every layer *except the output layer* ``out``, whose class
  count belongs to the source task; layers missing from the source or of another shape are skipped with a warning.

Layers not copied keep the target's He initialisation. Where the source model comes from (a tracked run, a
registered model, a pre-training run trained on demand) is :mod:`paraling.pipeline.pretrain`'s business: this module
knows nothing of MLflow or Hydra.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from paraling.errors import TransferError
from paraling.models.registry import layer_names

__all__ = ["copy_layers", "select_layers", "transfer_layers"]

log = logging.getLogger(__name__)


def select_layers(layers: Any, target: Sequence[str], source: Sequence[str]) -> list[str]:
    """The layer names to copy for ``transfer.layers``.

    ``"all"`` (or ``["all"]``): every target layer but ``out`` that the source has; ``"conv"``: every conv layer of
    the target (each must exist in the source); otherwise the listed names (each must exist in both).

    Raises:
        TransferError: Empty selection, or a named layer missing from either model.
    """
    if isinstance(layers, str):
        layers = [layers]
    names = [str(x) for x in layers]
    if not names:
        raise TransferError("transfer.layers is empty; name layers like [conv1,conv2,conv3] or use all")
    if names == ["all"]:
        return [n for n in target if n != "out" and n in source]
    if names == ["conv"]:
        names = [n for n in target if n.startswith("conv")]
    for n in names:
        if n not in target or n not in source:
            where = "target" if n not in target else "source"
            raise TransferError(
                f"transfer.layers: layer {n!r} does not exist in the {where} model; target layers {list(target)}, "
                f"source layers {list(source)}"
            )
    return names


def copy_layers(
    model: torch.nn.Module, state: dict[str, torch.Tensor], names: Sequence[str], strict: bool = True
) -> list[str]:
    """Copy ``weight`` and ``bias`` of each named layer from ``state`` into ``model``.

    Args:
        model: Target model; its other layers are left untouched.
        state: Source state dict.
        names: Layer names.
        strict: Raise on a shape mismatch (else skip the layer with a warning).

    Returns:
        The names actually copied.

    Raises:
        TransferError: A shape mismatch (naming the layer, the parameter and both shapes) when ``strict``.
    """
    copied = []
    for name in names:
        layer = getattr(model, name)
        pairs = []
        for pname, param in layer.named_parameters(recurse=False):
            src = state.get(f"{name}.{pname}")
            if src is None:
                raise TransferError(f"layer {name!r}: the source model has no parameter {name}.{pname}")
            if tuple(src.shape) != tuple(param.shape):
                msg = (
                    f"layer {name!r} ({pname}) does not fit: source shape {tuple(src.shape)} vs target shape "
                    f"{tuple(param.shape)}; use the same features/windows/model settings as the source run or "
                    "transfer fewer layers"
                )
                if strict:
                    raise TransferError(msg)
                log.warning("transfer: skipping %s", msg)
                break
            pairs.append((param, src))
        else:
            with torch.no_grad():
                for param, src in pairs:
                    param.copy_(src.to(dtype=param.dtype, device=param.device))
            copied.append(name)
    return copied


def transfer_layers(
    model: torch.nn.Module,
    spec: Mapping[str, Any],
    state: Mapping[str, torch.Tensor],
    layers: Any,
    features: Mapping[str, Any] | None = None,
) -> list[str]:
    """Copy the layers ``layers`` selects from a source model (``spec`` + ``state``) into ``model``.

    Args:
        model: A :class:`~paraling.models.cnn.WindowCNN` for the target task (built fresh, He-initialised).
        spec: The source's ``spec.json`` (``layer_names``, ``features``, ``fold``, ``run_id``).
        state: The source's state dict.
        layers: ``transfer.layers``.
        features: The target's feature settings (a warning names the ones that differ from the source's).

    Returns:
        The names of the copied layers (frozen by the fit loop for ``transfer.freeze_epochs`` epochs).

    Raises:
        TransferError: See :func:`select_layers` and :func:`copy_layers`; or nothing fits.
    """
    source = spec.get("run_id", "the source")
    target_names = layer_names(model)
    source_names = list(spec.get("layer_names") or {k.rsplit(".", 1)[0] for k in state})
    naive = (isinstance(layers, str) and layers == "all") or [str(x) for x in layers] == ["all"]
    names = select_layers(layers if isinstance(layers, str) else list(layers), target_names, source_names)
    theirs, mine = spec.get("features", {}), dict(features or {})
    diff = [k for k in ("kind", "n_mels", "sample_rate", "frame_shift_ms") if k in theirs and theirs[k] != mine.get(k)]
    if mine and diff:
        log.warning(
            "transfer: source run %s used different features (%s); transferred filters may not match",
            source,
            ", ".join(f"{k}={theirs[k]} vs {mine.get(k)}" for k in diff),
        )
    copied = copy_layers(model, dict(state), names, strict=not naive)
    if not copied:
        raise TransferError(f"transfer.layers={layers}: no layer of source run {source} fits the target model")
    log.info(
        "transfer: copied %s from run %s (fold %s); He-initialised %s",
        copied,
        source,
        spec.get("fold"),
        [n for n in target_names if n not in copied],
    )
    return copied
