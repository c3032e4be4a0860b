"""One searched parameter (:class:`ParamSpec`): its Optuna distribution, sampling, grid and Hydra override text."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from paraling.errors import ConfigError
from paraling.search.conditions import Condition

__all__ = ["GRID_LIMIT", "GRID_POINTS_LIMIT", "ParamSpec", "format_value", "render_override"]

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

    def bounds(self) -> tuple[float, float]:
        """``(low, high)`` of a float or int parameter.

        Raises:
            ConfigError: The parameter has no bounds (a categorical one).
        """
        if self.low is None or self.high is None:
            raise ConfigError(f"search space key {self.name!r}: a {self.kind} parameter needs low and high")
        return self.low, self.high

    def distribution(self) -> Any:
        """The matching :mod:`optuna.distributions` object."""
        from optuna import distributions as d

        if self.kind != "categorical":
            low, high = self.bounds()
        if self.kind == "float":
            return d.FloatDistribution(
                float(low),
                float(high),
                log=self.log,
                step=None if self.step is None else float(self.step),
            )
        if self.kind == "int":
            return d.IntDistribution(
                int(low),
                int(high),
                log=self.log,
                step=int(self.step or 1),
            )
        return d.CategoricalDistribution(list(self.choices))

    def active(self, values: Mapping[str, Any]) -> bool:
        """Whether every condition holds for the values sampled so far."""
        return all(c.holds(values) for c in self.conditions)

    def suggest(self, trial: Any) -> Any:
        """Sample this parameter in an Optuna trial."""
        if self.kind != "categorical":
            low, high = self.bounds()
        if self.kind == "float":
            return trial.suggest_float(
                self.name,
                float(low),
                float(high),
                log=self.log,
                step=None if self.step is None else float(self.step),
            )
        if self.kind == "int":
            return trial.suggest_int(
                self.name,
                int(low),
                int(high),
                log=self.log,
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
