"""Search spaces of a study file: typed parameters, conditions and their Hydra overrides.

A space maps Hydra config keys to parameter specs, in file order::

    space:
      model.n_blocks: {type: int, low: 2, high: 5}
      trainer.lr_start: {type: float, low: 0.001, high: 0.1, log: true}
      windows.width: [9, 11, 15, 18]                 # a bare list is a categorical parameter
      model.dropout_conv.{i}:                        # one parameter per block ...
        type: float
        low: 0.0
        high: 0.5
        step: 0.05
        foreach: {i: [0, 1, 2, 3, 4]}
        condition: "{i} < model.n_blocks"            # ... existing only for blocks < n_blocks

A ``condition`` (a string, or a list of strings that must all hold; ``and`` joins several in one string) compares a
parameter defined *above* it with a literal: ``==``, ``!=``, ``<``, ``<=``, ``>``, ``>=``, ``in``, ``not in``. A
parameter whose condition is false is not sampled and not overridden, so the configuration keeps its default; a
condition on an inactive parameter is false. Categorical choices may be lists or mappings (``[[], [conv1]]``): they
are stored in Optuna as their Hydra override text (``[conv1]``).
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from paraling.errors import ConfigError
from paraling.search.conditions import Condition, parse_condition

__all__ = ["Condition", "ParamSpec", "SearchSpace", "format_value", "render_override"]

_KEY = re.compile(r"^[+~]?[A-Za-z_][\w\-]*(\.(\w[\w\-]*))*$")
_PARAM_KEYS = {"type", "low", "high", "log", "step", "choices", "condition", "foreach"}
#: The most values one parameter, and the most points a whole grid, may have (a grid is meant to be run in full).
GRID_LIMIT, GRID_POINTS_LIMIT = 10_000, 1_000_000
_SIMPLE_STR = re.compile(r"^[A-Za-z_/][\w\-./:]*$")


def format_value(value: Any) -> str:
    """Hydra override text of a Python value (``true``, ``null``, ``0.001``, ``[conv1,conv2]``, ``{a:1}``)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ("nan" if value != value else ("inf" if value > 0 else "-inf"))
    if isinstance(value, str):
        if _SIMPLE_STR.match(value) and value not in ("true", "false", "null"):
            return value
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{k}:{format_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, Sequence):
        return "[" + ",".join(format_value(v) for v in value) + "]"
    raise ConfigError(f"cannot write {value!r} ({type(value).__name__}) as a Hydra override value")


def render_override(key: str, value: Any, encoded: bool = False) -> str:
    """``key=value`` for Hydra; ``encoded`` values (categorical lists/mappings) are already override text."""
    return f"{key}={value if encoded else format_value(value)}"


@dataclass(frozen=True)
class ParamSpec:
    """One searched configuration key.

    Attributes:
        name: The Hydra key (``model.n_blocks``, ``model.dropout_conv.2``, or a group such as ``aggregation``).
        kind: ``float``, ``int`` or ``categorical``.
        low: Lower bound (float/int).
        high: Upper bound, inclusive (float/int).
        log: Sample on a log scale.
        step: Discretisation step (``None`` = continuous float / step 1 int).
        choices: Categorical choices as stored in Optuna (lists/mappings as override text).
        encoded: Whether ``choices`` are override text (then written verbatim).
        conditions: All must hold for the parameter to exist in a trial.
    """

    name: str
    kind: str
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple[Any, ...] = ()
    encoded: bool = False
    conditions: tuple[Condition, ...] = ()

    def distribution(self) -> Any:
        """The matching :mod:`optuna.distributions` object."""
        from optuna import distributions as d

        if self.kind == "float":
            return d.FloatDistribution(
                float(self.low),
                float(self.high),
                log=self.log,  # type: ignore[arg-type]
                step=None if self.step is None else float(self.step),
            )
        if self.kind == "int":
            return d.IntDistribution(
                int(self.low),
                int(self.high),
                log=self.log,  # type: ignore[arg-type]
                step=int(self.step or 1),
            )
        return d.CategoricalDistribution(list(self.choices))

    def active(self, values: Mapping[str, Any]) -> bool:
        """Whether every condition holds for the values sampled so far."""
        return all(c.holds(values) for c in self.conditions)

    def suggest(self, trial: Any) -> Any:
        """Sample this parameter in an Optuna trial."""
        if self.kind == "float":
            return trial.suggest_float(
                self.name,
                float(self.low),
                float(self.high),
                log=self.log,  # type: ignore[arg-type]
                step=None if self.step is None else float(self.step),
            )
        if self.kind == "int":
            return trial.suggest_int(
                self.name,
                int(self.low),
                int(self.high),
                log=self.log,  # type: ignore[arg-type]
                step=int(self.step or 1),
            )
        return trial.suggest_categorical(self.name, list(self.choices))

    def override(self, value: Any) -> str:
        """The Hydra override that applies ``value`` (stepped floats rounded: 0.3, not 0.30000000000000004)."""
        if self.kind == "float" and self.step is not None and isinstance(value, float):
            value = round(value, 12)
        return render_override(self.name, value, self.encoded)

    def probe_values(self) -> list[Any]:
        """Values worth checking against the configuration schema: bounds or every choice."""
        if self.kind == "categorical":
            return list(self.choices)
        return [self.low, self.high]

    def grid_size(self, where: str) -> int:
        """How many values :meth:`grid_values` gives, computed without building them."""
        if self.kind == "categorical":
            return len(self.choices)
        if self.kind == "int":
            return (int(self.high) - int(self.low)) // int(self.step or 1) + 1  # type: ignore[arg-type]
        if self.step is None:
            raise ConfigError(
                f"{where}: the grid sampler needs `step` for float parameters (or use a categorical list), "
                f"but {self.name} has step=None"
            )
        return math.floor((float(self.high) - float(self.low)) / float(self.step) + 1e-9) + 1  # type: ignore[arg-type]

    def grid_values(self, where: str, limit: int = GRID_LIMIT) -> list[Any]:
        """Every value of this parameter on a grid (needs ``step`` for floats); the size is checked first.

        Raises:
            ConfigError: More than ``limit`` values, or a float without ``step``.
        """
        n = self.grid_size(where)
        if n > limit:
            raise ConfigError(f"{where}: {n} grid values for {self.name}; more than {limit} is not a grid")
        if self.kind == "categorical":
            return list(self.choices)
        if self.kind == "int":
            return list(range(int(self.low), int(self.high) + 1, int(self.step or 1)))  # type: ignore[arg-type]
        return [round(float(self.low) + i * float(self.step), 12) for i in range(n)]  # type: ignore[arg-type]

    def describe(self) -> dict[str, Any]:
        """A JSON-able description (logged on the MLflow parent run)."""
        d: dict[str, Any] = {"type": self.kind}
        if self.kind == "categorical":
            d["choices"] = list(self.choices)
        else:
            d.update(low=self.low, high=self.high)
            if self.log:
                d["log"] = True
            if self.step is not None:
                d["step"] = self.step
        if self.conditions:
            d["condition"] = " and ".join(c.text for c in self.conditions)
        return d


def _number(v: Any, where: str, field_name: str, integer: bool) -> float | int:
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise ConfigError(f"{where}.{field_name} must be a number, but got {field_name}={v!r}")
    if not math.isfinite(v):
        raise ConfigError(f"{where}.{field_name} must be a finite number, but got {field_name}={v!r}")
    if integer and not (isinstance(v, int) or float(v).is_integer()):
        raise ConfigError(f"{where}.{field_name} must be an integer for type int, but got {field_name}={v!r}")
    return int(v) if integer else float(v)


def _encode_choice(c: Any, where: str) -> tuple[Any, bool]:
    if c is None or isinstance(c, bool | int | float | str):
        return c, False
    if isinstance(c, Mapping | list | tuple):
        return format_value(c), True
    raise ConfigError(f"{where}.choices: unsupported choice {c!r} ({type(c).__name__})")


def _parse_one(name: str, body: Any, where: str, known: Sequence[str]) -> ParamSpec:
    if isinstance(body, list):
        body = {"type": "categorical", "choices": body}
    if not isinstance(body, Mapping):
        raise ConfigError(
            f"{where} must be a mapping such as {{type: float, low: 0.0, high: 0.5}} or a list of choices, "
            f"but got {body!r}"
        )
    unknown = set(body) - _PARAM_KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(_PARAM_KEYS)}")
    kind = body.get("type", "categorical" if "choices" in body else None)
    if kind not in ("float", "int", "categorical"):
        raise ConfigError(f"{where}.type must be one of ['float', 'int', 'categorical'], but got type={kind!r}")
    cond_raw = body.get("condition")
    conds: list[Condition] = []
    if cond_raw is not None:
        texts = cond_raw if isinstance(cond_raw, list) else [cond_raw]
        for t in texts:
            if not isinstance(t, str):
                raise ConfigError(f"{where}.condition must be a string or a list of strings, but got {t!r}")
            conds += parse_condition(t, f"{where}.condition", known)
    if kind == "categorical":
        extra = {"low", "high", "log", "step"} & set(body)
        if extra:
            raise ConfigError(f"{where}: {sorted(extra)} do not apply to a categorical parameter (use choices)")
        choices = body.get("choices")
        if not isinstance(choices, list) or not choices:
            raise ConfigError(f"{where}.choices must be a non-empty list, but got choices={choices!r}")
        enc = [_encode_choice(c, where) for c in choices]
        values = [v for v, _ in enc]
        if len({json.dumps(v, sort_keys=True) for v in values}) != len(values):
            raise ConfigError(f"{where}.choices has duplicates: {choices!r}")
        encoded = any(e for _, e in enc)
        if encoded:  # mixed lists and scalars: write every choice as override text
            values = [v if e else format_value(v) for v, e in enc]
        return ParamSpec(name, "categorical", choices=tuple(values), encoded=encoded, conditions=tuple(conds))
    if "choices" in body:
        raise ConfigError(f"{where}: choices only apply to type categorical, but got type={kind}")
    integer = kind == "int"
    for f in ("low", "high"):
        if f not in body:
            raise ConfigError(f"{where}.{f} is required for type {kind}")
    low, high = _number(body["low"], where, "low", integer), _number(body["high"], where, "high", integer)
    if low > high:
        raise ConfigError(f"{where}: low must be <= high, but got low={low!r}, high={high!r}")
    log = body.get("log", False)
    if not isinstance(log, bool):
        raise ConfigError(f"{where}.log must be true or false, but got log={log!r}")
    step = body.get("step")
    if step is not None:
        step = _number(step, where, "step", integer)
        if step <= 0:
            raise ConfigError(f"{where}.step must be > 0, but got step={step!r}")
        if log and not (integer and step == 1):
            raise ConfigError(f"{where}: log and step cannot be combined, but got log=true, step={step!r}")
    if log and low <= 0:
        raise ConfigError(f"{where}: log scale needs low > 0, but got low={low!r}")
    return ParamSpec(name, kind, low, high, log, step, conditions=tuple(conds))


def _expand(name: str, body: Any, where: str) -> list[tuple[str, Any, str]]:
    """Expand ``foreach`` into one (name, body, where) per combination, substituting ``{var}``."""
    if not isinstance(body, Mapping) or "foreach" not in body:
        if "{" in name:
            raise ConfigError(f"{where}: the key has a {{placeholder}} but no `foreach` defines it")
        return [(name, body, where)]
    fe = body["foreach"]
    if not isinstance(fe, Mapping) or not fe or not all(isinstance(v, list) and v for v in fe.values()):
        raise ConfigError(f"{where}.foreach must map names to non-empty lists, e.g. {{i: [0, 1, 2]}}, but got {fe!r}")
    placeholders = set(re.findall(r"\{(\w+)\}", name))
    if placeholders != set(fe):
        raise ConfigError(
            f"{where}: foreach defines {sorted(fe)} but the key uses placeholders {sorted(placeholders)}; "
            "they must match"
        )
    rest = {k: v for k, v in body.items() if k != "foreach"}
    out = []
    for combo in itertools.product(*fe.values()):
        sub = {k: str(v) for k, v in zip(fe, combo, strict=True)}
        n = _substitute(name, sub, where)
        b = dict(rest)
        if "condition" in b:
            c = b["condition"]
            texts = c if isinstance(c, list) else [c]
            done = [_substitute(str(x), sub, f"{where}.condition") for x in texts]
            b["condition"] = done if isinstance(c, list) else done[0]
        out.append((n, b, f"space.{n}"))
    return out


def _substitute(text: str, sub: Mapping[str, str], where: str) -> str:
    """``{var}`` replaced by ``sub[var]``; any other ``{...}`` is an error naming it (not a KeyError)."""

    def one(m: re.Match[str]) -> str:
        if m.group(1) not in sub:
            raise ConfigError(
                f"{where}: {m.group(0)!r} is not a foreach placeholder; foreach defines {sorted(sub)} "
                f"(write them as {', '.join('{' + k + '}' for k in sorted(sub))})"
            )
        return sub[m.group(1)]

    return re.sub(r"\{([^{}]*)\}", one, text)


@dataclass(frozen=True)
class SearchSpace:
    """An ordered tuple of :class:`ParamSpec`; sampling follows file order so conditions can look back."""

    params: tuple[ParamSpec, ...] = field(default_factory=tuple)

    @classmethod
    def from_mapping(cls, data: Any, field_name: str = "space") -> SearchSpace:
        """Parse and validate the ``space`` mapping of a study file.

        Raises:
            ConfigError: Naming ``space.<key>`` and the offending value.
        """
        if not isinstance(data, Mapping) or not data:
            raise ConfigError(
                f"{field_name} must be a non-empty mapping of config keys to parameters, but got {data!r}"
            )
        params: list[ParamSpec] = []
        for raw_name, body in data.items():
            if not isinstance(raw_name, str):
                raise ConfigError(f"{field_name}: keys must be config keys such as model.n_blocks, got {raw_name!r}")
            for name, b, where in _expand(raw_name, body, f"{field_name}.{raw_name}"):
                if not _KEY.match(name):
                    raise ConfigError(f"{where}: {name!r} is not a Hydra config key such as model.dropout_conv.1")
                if any(p.name == name for p in params):
                    raise ConfigError(f"{where}: parameter {name} is defined twice")
                params.append(_parse_one(name, b, where, [p.name for p in params]))
        return cls(tuple(params))

    @property
    def names(self) -> list[str]:
        """Parameter names in sampling order."""
        return [p.name for p in self.params]

    @property
    def conditional(self) -> bool:
        """Whether any parameter has a condition."""
        return any(p.conditions for p in self.params)

    def suggest(self, trial: Any) -> dict[str, Any]:
        """Sample the active parameters of ``trial`` in order; returns ``{name: value}``."""
        values: dict[str, Any] = {}
        for p in self.params:
            if p.active(values):
                values[p.name] = p.suggest(trial)
        return values

    def active_values(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """The subset of ``params`` (e.g. a retried trial's) that is active, in space order."""
        values: dict[str, Any] = {}
        for p in self.params:
            if p.name in params and p.active(values):
                values[p.name] = params[p.name]
        return values

    def overrides(self, values: Mapping[str, Any]) -> list[str]:
        """Hydra overrides for sampled ``values``."""
        by_name = {p.name: p for p in self.params}
        return [by_name[k].override(v) if k in by_name else render_override(k, v) for k, v in values.items()]

    def grid(self, where: str = "space") -> dict[str, list[Any]]:
        """The Cartesian grid for :class:`optuna.samplers.GridSampler` (its size is checked before it is built).

        Raises:
            ConfigError: A parameter with too many values, or more than :data:`GRID_POINTS_LIMIT` points.
        """
        points = 1
        for p in self.params:
            n = p.grid_size(f"{where}.{p.name}")
            if n > GRID_LIMIT:
                raise ConfigError(
                    f"{where}.{p.name}: {n} grid values for {p.name}; more than {GRID_LIMIT} is not a grid"
                )
            points *= n
            if points > GRID_POINTS_LIMIT:
                raise ConfigError(
                    f"{where}: the grid has more than {GRID_POINTS_LIMIT} points (at {p.name}); a grid is run in "
                    "full: use fewer values, or the tpe/random sampler"
                )
        return {p.name: p.grid_values(f"{where}.{p.name}") for p in self.params}

    def corner(self, high: bool) -> dict[str, Any]:
        """All-low (or all-high / last choice) values with conditions applied (schema probing)."""
        values: dict[str, Any] = {}
        for p in self.params:
            if p.active(values):
                values[p.name] = (
                    (p.choices[-1] if high else p.choices[0])
                    if p.kind == "categorical"
                    else (p.high if high else p.low)
                )
        return values

    def describe(self) -> dict[str, Any]:
        """JSON-able description of the space."""
        return {p.name: p.describe() for p in self.params}

    def to_json(self) -> str:
        """Compact JSON of :meth:`describe`."""
        return json.dumps(self.describe(), sort_keys=False, default=str)
