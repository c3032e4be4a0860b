"""Models: the registry of ``model.kind``, at two levels.

- ``window`` models score fixed-width windows of frames, like the paper's CNN: ``build(cfg, n_features, width,
  n_classes)`` returns a :class:`torch.nn.Module` with ``features(x) -> (batch, embed_dim)``, ``classify(h) ->
  logits`` and the attributes ``n_classes``, ``embed_dim`` and ``layer_names``; the training loop, the votes and
  prediction work with any of them (:class:`~paraling.models.cnn.WindowCNN` is the built-in one).
- ``utterance`` models classify one vector per utterance (openSMILE functionals, log-mel statistics, embeddings):
  ``build(cfg, seed)`` returns a scikit-learn classifier (``fit(X, y)`` or ``fit(X, y, groups)``, ``predict_proba``).

A model of your own is registered with :func:`register_model` (``level=`` one of the two) in a plug-in module.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from paraling.config_groups import CNNConfig, DnnConfig, LrConfig, RfConfig, SslHeadConfig, SvmConfig
from paraling.errors import ConfigError, ModelError
from paraling.plugins import Entry, Registry

__all__ = [
    "LEVELS",
    "MODELS",
    "WINDOW_MODEL_ATTRIBUTES",
    "build_estimator",
    "build_window_model",
    "layer_names",
    "model_level",
    "register_model",
]

LEVELS = ("window", "utterance")
#: What a window model offers the training loop, the votes, transfer and prediction.
WINDOW_MODEL_ATTRIBUTES = ("features", "classify", "n_classes", "embed_dim", "layer_names")
#: The models, by ``model.kind``; ``entry.info["level"]`` is ``window`` or ``utterance``.
MODELS: Registry[Any] = Registry("model", "model")

MODELS.add(Entry("cnn", "paraling.models.cnn:build_model", CNNConfig, {"level": "window"}))
MODELS.add(Entry("ssl_head", "paraling.models.ssl_head:build_model", SslHeadConfig, {"level": "window"}))
for _kind, _config in (("svm", SvmConfig), ("lr", LrConfig), ("rf", RfConfig), ("dnn", DnnConfig)):
    MODELS.add(Entry(_kind, "paraling.models.baselines:estimator_for", _config, {"level": "utterance"}))


def register_model(kind: str, *, config: type, level: str, **info: Any) -> Callable[[Any], Any]:
    """Decorator registering a model builder as ``model.kind=kind`` (see the module docstring for ``level``).

    Raises:
        ConfigError: ``level`` is not ``window`` or ``utterance``.
    """
    if level not in LEVELS:
        raise ConfigError(f"model {kind!r}: level must be one of {list(LEVELS)}, but got level={level!r}")
    return MODELS.register(kind, config=config, level=level, **info)


def model_level(kind: str) -> str:
    """``window`` or ``utterance`` for a registered ``model.kind``."""
    return str(MODELS.entry(kind).info["level"])


def build_window_model(cfg: Any, n_features: int, width: int, n_classes: int, frontend: Any = None) -> Any:
    """The window model a ``model`` node describes, for windows of ``n_features`` x ``width`` frames.

    ``frontend`` (the run's feature extractor) goes to builders that take a ``frontend`` argument: a head over a
    pre-trained encoder reads its layers from it (:func:`paraling.models.ssl_head.build_model`).

    Raises:
        ConfigError: ``cfg.kind`` is not a window model.
        ModelError: The builder returned an object without one of :data:`WINDOW_MODEL_ATTRIBUTES`.
    """
    if model_level(str(cfg.kind)) != "window":
        raise ConfigError(f"model.kind={cfg.kind!r} is an utterance-level model, not a window model")
    builder = MODELS.entry(str(cfg.kind)).load()
    extra = {"frontend": frontend} if "frontend" in inspect.signature(builder).parameters else {}
    model = builder(cfg, n_features, width, n_classes, **extra)
    missing = [a for a in WINDOW_MODEL_ATTRIBUTES if not hasattr(model, a)]
    if missing:
        raise ModelError(
            f"model.kind={cfg.kind!r}: its builder returned a {type(model).__name__} without {missing}; a window "
            f"model needs all of {list(WINDOW_MODEL_ATTRIBUTES)} (see docs/extending.md)"
        )
    return model


def layer_names(model: Any) -> list[str]:
    """The names of a window model's layers, the units transfer learning copies and freezes.

    Raises:
        ModelError: ``model`` declares no ``layer_names``.
    """
    names = getattr(model, "layer_names", None)
    if names is None:
        raise ModelError(f"{type(model).__name__} declares no layer_names, so its layers cannot be transferred")
    return [str(n) for n in names]


def build_estimator(cfg: Any, seed: int = 0) -> Any:
    """The scikit-learn classifier an utterance-level ``model`` node describes.

    Raises:
        ConfigError: ``cfg.kind`` is not an utterance-level model.
    """
    if model_level(str(cfg.kind)) != "utterance":
        raise ConfigError(f"model.kind={cfg.kind!r} is a window model, not an utterance-level one")
    return MODELS.entry(str(cfg.kind)).load()(cfg, seed)
