"""Checks of a composed configuration that the schema's types cannot express: choices, ranges, cross-field rules.

Every rule names the key, the bad value and what is allowed; :func:`validate` runs them all before anything is read
or trained, and :func:`check_training_memory` refuses a model whose training batch cannot fit in memory (instead of
being killed by the kernel with no message).
"""

from __future__ import annotations

import math
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from paraling.config import ParalingConfig
from paraling.config_compat import legacy_node
from paraling.config_groups import AugmentConfig
from paraling.data.recipes import CORPORA
from paraling.errors import ConfigError, ResourceError
from paraling.features import EXTRACTORS
from paraling.models import MODELS
from paraling.plugins import Registry, load_plugins
from paraling.scoring.aggregation import VOTES

__all__ = ["check_training_memory", "training_batch_bytes", "validate"]

# The selectors of the plug-in groups (corpus.kind, features.kind, model.kind, aggregation.kind) take their choices
# from their registries (_type_groups); these are the fixed choices.
_CHOICES: dict[str, tuple[str, ...]] = {
    "corpus.on_bad_file": ("skip", "error"),
    "features.normalize": ("utterance", "global", "none"),
    "windows.short_policy": ("pad", "skip", "error"),
    "augment.kind": ("none", "pitch"),
    "model.baseline.features": ("auto", "compare", "frames", "logmel", "embeddings"),
    "model.baseline.pooling": ("mean_std", "mean"),
    "trainer.optimizer": ("sgd", "adamw"),
    "features.backend": ("transformers", "resemblyzer"),
    "features.precision": ("auto", "fp32", "fp16"),
    "model.baseline.embedding_level": ("utterance", "window"),
    "trainer.select": ("best", "last"),
    "trainer.precision": ("auto", "fp32", "bf16"),
    "trainer.capture": ("auto", "eager", "graph", "compile"),
    "cv.scheme": ("kfold", "loso", "split"),
    "progress": ("auto", "always", "never"),
}
#: The plug-in groups and their registries.
_REGISTRIES: dict[str, Registry[Any]] = {
    "corpus": CORPORA,
    "features": EXTRACTORS,
    "model": MODELS,
    "aggregation": VOTES,
}

# key: (lowest allowed, inclusive?) -- None values are allowed wherever the schema allows None
_LOWER: dict[str, tuple[float, bool]] = {
    "seed": (0, True),
    "features.sample_rate": (0, False),
    "features.n_mels": (1, True),
    "features.frame_length_ms": (0, False),
    "features.frame_shift_ms": (0, False),
    "features.f_min": (0, True),
    "windows.width": (1, True),
    "windows.shift": (1, True),
    "model.n_blocks": (1, True),
    "model.pool_size": (1, True),
    "trainer.epochs": (1, True),
    "trainer.batch_size": (2, True),  # batches of one window are skipped (batch statistics need two)
    "trainer.eval_batch_size": (1, True),
    "trainer.eval_batch_size_gpu": (1, True),
    "trainer.lr_start": (0, False),
    "trainer.lr_end": (0, True),
    "trainer.weight_decay": (0, True),
    "trainer.patience": (0, True),
    "trainer.threads": (0, True),
    "trainer.max_windows_per_epoch": (2, True),
    "trainer.spec_augment.freq_masks": (0, True),
    "trainer.spec_augment.freq_width": (1, True),
    "trainer.spec_augment.time_masks": (0, True),
    "trainer.spec_augment.time_width": (1, True),
    "trainer.mixup": (0, True),
    "tracking.system_metrics_interval": (0, False),
    "transfer.freeze_epochs": (0, True),
    "transfer.lr_scale": (0, True),
    "aggregation.ridge_alpha": (0, True),
    "corpus.demo_speakers": (1, True),
}
_INT_LISTS = ("model.channels", "model.kernel_sizes", "model.fc_sizes")


def _get(cfg: DictConfig, dotted: str) -> Any:
    return OmegaConf.select(cfg, dotted, default=None)


def _name(key: str) -> str:
    return key.split(".")[-1]


def _check_choices_and_ranges(cfg: DictConfig) -> None:
    for key, allowed in _CHOICES.items():
        value = _get(cfg, key)
        if value is not None and value not in allowed:
            raise ConfigError(f"{key} must be one of {list(allowed)}, but got {_name(key)}={value!r}")
    for key, (low, inclusive) in _LOWER.items():
        value = _get(cfg, key)
        if value is None:
            continue
        ok = value >= low if inclusive else value > low
        if not ok or (isinstance(value, float) and not math.isfinite(value)):
            raise ConfigError(f"{key} must be {'>=' if inclusive else '>'} {low}, but got {_name(key)}={value!r}")
    for key in _INT_LISTS:
        for i, v in enumerate(_get(cfg, key) or []):
            if not isinstance(v, int) or v < 1:
                raise ConfigError(f"{key}[{i}] must be a whole number >= 1, but got {_name(key)}[{i}]={v!r}")


def _type_groups(cfg: DictConfig) -> None:
    """Each plug-in group's node typed by its kind's dataclass (old selector names read as ``kind``); ``augment`` by
    its one dataclass."""
    for group, registry in _REGISTRIES.items():
        node = cfg.get(group)
        if node is None:
            raise ConfigError(
                f"{group} is not set; select one of {registry.kinds()}, e.g. {group}={registry.kinds()[0]}"
            )
        plain = _plain(node, group)
        kind = str(legacy_node(group, plain).get("kind"))
        config = registry.entry(kind).config if kind in registry else None
        cfg[group] = registry.typed(legacy_node(group, plain, config))
    node = cfg.get("augment")
    plain = legacy_node("augment", _plain(node, "augment") if node is not None else {"kind": "none"})
    try:
        cfg.augment = OmegaConf.merge(OmegaConf.structured(AugmentConfig), plain)
    except Exception as exc:  # OmegaConf's validation errors
        raise ConfigError(f"augment: {str(exc).splitlines()[0]}") from None


def _plain(node: Any, group: str) -> dict[str, Any]:
    plain = OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node
    if not isinstance(plain, dict):
        raise ConfigError(f"{group} must be a mapping with a 'kind', but got {plain!r}")
    return {str(k): v for k, v in plain.items()}


def _check_features(cfg: DictConfig) -> None:
    f = cfg.features
    if "frame_length_ms" not in f:  # not a log-mel extractor: its own from_config checks its settings
        return
    if f.frame_length_ms < f.frame_shift_ms:
        raise ConfigError(
            "features.frame_length_ms must be >= features.frame_shift_ms, but got "
            f"{f.frame_length_ms} < {f.frame_shift_ms}"
        )
    for key in ("frame_shift_ms", "frame_length_ms"):
        samples = f[key] * f.sample_rate / 1000.0
        if samples < 1:
            raise ConfigError(
                f"features.{key}={f[key]} is {samples:.3g} samples at sample_rate={f.sample_rate}; it must be at least "
                "one sample (e.g. features.frame_shift_ms=10)"
            )
    nyquist = f.sample_rate / 2
    top = f.f_max if f.f_max is not None else nyquist
    if f.f_max is not None and f.f_max > nyquist:
        raise ConfigError(f"features.f_max must be <= sample_rate / 2 = {nyquist:g} Hz, but got f_max={f.f_max}")
    if not f.f_min < top:
        raise ConfigError(
            f"features.f_min must be below the top of the mel range ({top:g} Hz: f_max, or sample_rate / 2), but got "
            f"f_min={f.f_min}"
        )


def _check_model(cfg: DictConfig) -> None:
    m = cfg.model
    if m.kind != "cnn":  # the CNN's cross-field rules; other models check their own settings when built
        return
    if m.n_blocks > len(m.channels) or m.n_blocks > len(m.kernel_sizes) or m.n_blocks > len(m.dropout_conv):
        raise ConfigError(
            f"model.n_blocks={m.n_blocks} needs at least that many entries in model.channels "
            f"({len(m.channels)}), model.kernel_sizes ({len(m.kernel_sizes)}) and model.dropout_conv "
            f"({len(m.dropout_conv)}); extend those lists or lower model.n_blocks"
        )
    if not 0.0 <= m.dropout_fc < 1.0:
        raise ConfigError(f"model.dropout_fc must be in [0, 1), but got dropout_fc={m.dropout_fc!r}")
    for i, p in enumerate(m.dropout_conv):
        if not 0.0 <= p < 1.0:
            raise ConfigError(f"model.dropout_conv[{i}] must be in [0, 1), but got {p!r}")


def _check_trainer(cfg: DictConfig) -> None:
    t = cfg.trainer
    if not 0.0 < t.val_speaker_fraction < 1.0:
        raise ConfigError(f"trainer.val_speaker_fraction must be in (0, 1), but got {t.val_speaker_fraction!r}")
    if not (0 <= t.momentum_start < 1.0 and 0 <= t.momentum_end < 1.0):
        raise ConfigError(
            "trainer.momentum_start and momentum_end must lie in [0, 1), but got "
            f"momentum_start={t.momentum_start}, momentum_end={t.momentum_end}"
        )
    sa = t.spec_augment
    for key, width, size, what in (
        ("freq_width", sa.freq_width, OmegaConf.select(cfg, "features.n_mels", default=None), "features.n_mels"),
        ("time_width", sa.time_width, cfg.windows.width, "windows.width"),
    ):
        if size is not None and width >= size:
            raise ConfigError(
                f"trainer.spec_augment.{key}={width} would mask a whole window ({what}={size}); "
                f"use a width below {size}"
            )


def validate(cfg: DictConfig | ListConfig | ParalingConfig) -> DictConfig:
    """Check values that the schema's types cannot express.

    Args:
        cfg: A composed configuration.

    Returns:
        The same configuration as a ``DictConfig``.

    Raises:
        ConfigError: Naming the key, the bad value and what is allowed; or ``cfg`` is not a mapping.
    """
    conf = cfg if isinstance(cfg, DictConfig) else OmegaConf.structured(cfg)
    if not isinstance(conf, DictConfig):
        raise ConfigError(f"a paraling configuration maps group names to nodes; got a {type(cfg).__name__}")
    load_plugins(list(conf.get("plugins") or []))
    _type_groups(conf)
    _check_choices_and_ranges(conf)
    _check_features(conf)
    _check_model(conf)
    _check_trainer(conf)
    if conf.cv.scheme == "kfold" and conf.cv.folds < 2:
        raise ConfigError(f"cv.folds must be >= 2 for cv.scheme=kfold, but got folds={conf.cv.folds}")
    if conf.corpus.kind in ("csv", "folders", "manifest") and not conf.corpus.path:
        raise ConfigError(
            f"corpus.kind={conf.corpus.kind} needs corpus.path; pass e.g. corpus={conf.corpus.kind} "
            "corpus.path=/path/to/data"
        )
    layers = conf.transfer.layers
    if conf.transfer.source == "encoder":  # the encoder's layer numbers (paraling.pipeline.encoder_transfer)
        return conf
    for layer in [layers] if isinstance(layers, str) else layers:
        if not isinstance(layer, str):
            raise ConfigError(f"transfer.layers must be names like conv1, but got {layer!r}")
    return conf


def training_batch_bytes(cfg: DictConfig) -> int:
    """Memory one training batch of the CNN takes, roughly: every block's maps, kept for backward, plus gradients.

    Per block: the convolution's output (float32, and its gradient) at the block's input size ("same" padding),
    and the pooled output with its mask; windows are ``features.n_mels`` x ``windows.width``.
    """
    m, bs = cfg.model, int(cfg.trainer.batch_size)
    n_features = _n_features(cfg)
    h, w, total = n_features, int(cfg.windows.width), bs * n_features * int(cfg.windows.width) * 4
    pool = int(m.pool_size)
    for c in list(m.channels)[: int(m.n_blocks)]:
        total += bs * int(c) * h * w * (4 + 4 + 1)  # conv output, its gradient, the pooling/ReLU mask
        h, w = max(h // min(pool, h), 1), max(w // min(pool, w), 1)
    return total


def _n_features(cfg: DictConfig) -> int:
    """Values per frame: ``features.n_mels`` of log-mel extractors, else what the extractor says."""
    n = OmegaConf.select(cfg, "features.n_mels", default=None)
    if n is not None:
        return int(n)
    from paraling.features import make_extractor

    return int(make_extractor(cfg.features).n_features)


def check_training_memory(cfg: DictConfig, available_bytes: int, where: str) -> None:
    """Refuse a configuration whose training batch needs more than half of ``available_bytes`` (the CNN's estimate;
    other window models are not estimated).

    Raises:
        ResourceError: Naming the estimate, what is free and the keys to lower.
    """
    if cfg.model.kind != "cnn":
        return
    need = training_batch_bytes(cfg)
    if need > available_bytes // 2:
        raise ResourceError(
            f"one training batch needs about {need / 2**30:.1f} GiB (trainer.batch_size={cfg.trainer.batch_size}, "
            f"windows.width={cfg.windows.width}, features: {_n_features(cfg)} values per frame, model.channels="
            f"{list(cfg.model.channels)[: int(cfg.model.n_blocks)]}), but {where} has {available_bytes / 2**30:.1f} "
            "GiB free. Fix: lower windows.width or trainer.batch_size (or model.channels)"
        )
