"""``transfer=encoder``: fine-tune the top layers of the ``features=ssl`` encoder with the head.

The paper transfers the first layers of a CNN trained on other speech and trains the rest; on a pre-trained encoder
the same idea keeps the lower layers frozen (their output cached once per recording, like any features) and trains
the top ``k`` layers with the head, at ``transfer.lr_scale`` times the head's learning rate. ``transfer.layers`` is
in the encoder's terms: ``k`` (the top ``k`` layers), ``all``, or the layer numbers (``[11, 12]`` of a 12-layer
encoder; layer ``i`` outputs hidden state ``i``). The run then reads hidden state ``L - k`` (``features.layers`` is
set to it) and the head (``model=ssl_head``) holds a trainable copy of layers ``L - k + 1 .. L``
(:meth:`paraling.features.hf_encoder.HFEncoder.top_layers`); ``transfer.freeze_epochs`` keeps them fixed at first.
``features.normalize`` is set to ``none``: the copied layers must see the hidden state they were trained on.
"""

from __future__ import annotations

import logging
from typing import Any

from omegaconf import DictConfig, OmegaConf

from paraling.errors import ConfigError

__all__ = ["ENCODER_SOURCE", "is_encoder_transfer", "resolve_encoder_transfer", "top_k"]

log = logging.getLogger(__name__)

ENCODER_SOURCE = "encoder"


def is_encoder_transfer(cfg: Any) -> bool:
    """Whether ``transfer.source`` is the run's own encoder."""
    return str(OmegaConf.select(cfg, "transfer.source", default="") or "") == ENCODER_SOURCE


def top_k(layers: Any, n_layers: int) -> int:
    """How many top layers ``transfer.layers`` names, for an encoder of ``n_layers`` layers.

    Raises:
        ConfigError: A count or layer numbers that are not the encoder's top layers.
    """
    if isinstance(layers, str) and layers == "all":
        return n_layers
    if isinstance(layers, int) and not isinstance(layers, bool):
        if 1 <= layers <= n_layers:
            return layers
    elif isinstance(layers, list | tuple) and layers and all(isinstance(v, int) for v in layers):
        k = len(layers)
        if sorted(layers) == list(range(n_layers - k + 1, n_layers + 1)):
            return k
    raise ConfigError(
        f"transfer.layers={layers!r}: with transfer.source=encoder give how many top layers to fine-tune (1.."
        f"{n_layers}), 'all', or the top layers' numbers, e.g. [{n_layers - 1}, {n_layers}] of this {n_layers}-layer "
        "encoder"
    )


def resolve_encoder_transfer(cfg: DictConfig) -> DictConfig:
    """``cfg`` with ``features.layers`` and ``model.finetune_layers``/``encoder_lr_scale`` set from ``transfer``
    (unchanged unless ``transfer.source=encoder``).

    Raises:
        ConfigError: Not ``features=ssl`` with a transformers encoder, a model that cannot fine-tune it, or
            ``transfer.layers`` that are not the top layers.
    """
    if not is_encoder_transfer(cfg):
        return cfg
    if cfg.features.kind != "ssl" or cfg.features.get("backend") != "transformers":
        raise ConfigError("transfer.source=encoder fine-tunes the encoder of features=ssl (backend transformers)")
    if "finetune_layers" not in cfg.model:
        raise ConfigError(
            f"transfer.source=encoder: model={cfg.model.kind} cannot fine-tune encoder layers; use model=ssl_head"
        )
    from paraling.features.ssl import SslExtractor

    n_layers = SslExtractor.from_config(cfg.features).n_states - 1
    layers = cfg.transfer.layers
    k = top_k(OmegaConf.to_container(layers) if OmegaConf.is_config(layers) else layers, n_layers)
    out = cfg.copy()
    OmegaConf.set_readonly(out, False)
    out.features.layers = n_layers - k
    out.features.normalize = "none"  # the copied layers read the hidden state as the encoder gives it
    out.model.finetune_layers = k
    out.model.encoder_lr_scale = float(cfg.transfer.lr_scale)
    log.info(
        "transfer=encoder: layers %d..%d of %s are fine-tuned at %g x the learning rate, on hidden state %d",
        n_layers - k + 1,
        n_layers,
        cfg.features.model,
        float(cfg.transfer.lr_scale),
        n_layers - k,
    )
    return out
