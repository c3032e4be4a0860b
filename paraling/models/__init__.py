"""Models (no MLflow, Hydra or Optuna): the registry of ``model.kind`` (window and utterance-level), the windowed
CNN, the utterance-level estimators, layer transfer."""

from paraling.models.registry import MODELS, build_estimator, build_window_model, model_level, register_model

__all__ = ["MODELS", "build_estimator", "build_window_model", "model_level", "register_model"]
