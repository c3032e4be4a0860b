"""Check a study against the configuration schema before any trial runs.

Every override and every parameter's bounds and choices are applied to the composed configuration: values through
OmegaConf's typed schema and the config checks (:func:`paraling.config_checks.validate`: a space such as
``model.n_blocks`` in [-5, 0] can only fail), config-group choices through composition, then the all-low and all-high
corners are composed and checked. Errors name ``overrides`` or ``space.<param>`` and carry the reason.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from paraling.errors import ConfigError
from paraling.search.spec import StudySpec

__all__ = ["check_against_config"]


def check_against_config(spec: StudySpec, extra: list[str], load: Callable[[list[str]], Any]) -> Any:
    """Check the study's overrides and every parameter against the configuration schema before any trial.

    Composes the base configuration once (``load(overrides)``), then tries every parameter's bounds / choices on it
    (values through OmegaConf's typed schema; config-group choices through ``load``) and composes the all-low and
    all-high corners.

    Args:
        spec: The study.
        extra: Command-line overrides applied to every trial.
        load: Composes a configuration from overrides (Hydra ``compose`` or a launcher's config loader).

    Returns:
        The composed base configuration (tracking settings for the parent run come from it).

    Raises:
        ConfigError: Naming ``overrides`` or ``space.<param>`` and Hydra's reason.
    """
    from omegaconf import DictConfig, OmegaConf

    from paraling.config_checks import validate

    base = list(spec.overrides) + list(extra)
    searched = set(spec.space.names)
    for o in base:
        key = o.split("=", 1)[0].lstrip("+~")
        if key in searched:
            raise ConfigError(f"override {o!r} sets {key}, which the study searches (space.{key}); remove one of them")
    try:
        cfg = load(base)
    except Exception as exc:  # hydra ConfigCompositionException, OverrideParseException, omegaconf errors
        raise ConfigError(f"overrides {base}: {_first_line(exc)}") from exc
    try:
        validate(cfg)
    except ConfigError as exc:
        raise ConfigError(f"overrides {base}: {exc}") from exc
    if spec.ensemble is not None and spec.ensemble.register and not cfg.tracking.log_model:
        raise ConfigError(
            f"ensemble.register: {spec.ensemble.register!r} registers the trials' models, but the overrides set "
            "tracking.log_model=false, so no trial logs one; drop that override or the ensemble's register key"
        )
    if spec.ensemble is not None and spec.ensemble.register and not cfg.tracking.enabled:
        raise ConfigError(
            f"ensemble.register: {spec.ensemble.register!r} needs MLflow tracking, but tracking is off "
            "(tracking=none); drop that override or the ensemble's register key"
        )
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    for p in spec.space.params:
        where = f"space.{p.name}"
        key = p.name.lstrip("+~")
        node = OmegaConf.select(cfg, key, default=None, throw_on_missing=False)
        is_group = isinstance(node, DictConfig)
        for value in p.probe_values():
            ov = p.override(value)
            try:
                parsed = parser.parse_override(ov)
            except Exception as exc:
                raise ConfigError(f"{where}: {ov!r} is not a valid Hydra override: {_first_line(exc)}") from exc
            try:
                if is_group or p.name.startswith(("+", "~")):
                    load([*base, ov])
                else:
                    probe = cfg.copy()
                    if OmegaConf.select(probe, key, default="__missing__") == "__missing__":
                        raise ConfigError(f"no config key {key!r} (check the spelling; lists use key.INDEX)")
                    OmegaConf.update(probe, key, parsed.value(), merge=True)
                    _validate_alone(probe, key, searched)
            except ConfigError as exc:
                raise ConfigError(f"{where}: {exc}") from exc
            except Exception as exc:
                raise ConfigError(
                    f"{where}: value {value!r} does not fit the configuration: {_first_line(exc)}"
                ) from exc
    for high in (False, True):
        corner = spec.space.overrides(spec.space.corner(high))
        which = "high" if high else "low"
        try:
            composed = load([*base, *corner])
        except Exception as exc:
            raise ConfigError(f"space: the {which} corner {corner} does not compose: {_first_line(exc)}") from exc
        try:
            validate(composed)
        except ConfigError as exc:
            raise ConfigError(f"space: the {which} corner {corner} fails the config checks: {exc}") from exc
    return cfg


def _validate_alone(cfg: Any, key: str, searched: set[str]) -> None:
    """The config checks on one parameter's value; a failure counts only when no other searched key is involved
    (a value that is wrong alone may be right beside another parameter's value, e.g. more blocks with more channels).

    Raises:
        ConfigError: The value can only fail.
    """
    from paraling.config_checks import validate

    try:
        validate(cfg)
    except ConfigError as exc:
        others = [k for k in searched - {key} if k.lstrip("+~") in str(exc)]
        if not others:
            raise


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return " ".join(text.splitlines()[:2])
