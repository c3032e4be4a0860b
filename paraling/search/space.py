"""Search spaces of a study file: typed parameters, conditions and their Hydra overrides.

A space maps Hydra config keys to parameter specs::

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

A ``condition`` (a string, or a list of strings that must all hold; ``and`` joins several in one string) compares
another parameter of the space (defined anywhere in it: parameters are sampled after those their conditions name)
with a literal: ``==``, ``!=``, ``<``, ``<=``, ``>``, ``>=``, ``in``, ``not in``. A parameter whose condition is false
is not sampled and not overridden, so the configuration keeps its default; a condition on an inactive parameter is
false. Categorical choices may be lists or mappings (``[[], [conv1]]``): they are stored in Optuna as their Hydra
override text (``[conv1]``). Parsing is :mod:`paraling.search.space_parse`; one parameter is
:class:`~paraling.search.param.ParamSpec`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from paraling.errors import ConfigError
from paraling.search.conditions import Condition
from paraling.search.param import GRID_LIMIT, GRID_POINTS_LIMIT, ParamSpec, format_value, render_override

__all__ = ["Condition", "ParamSpec", "SearchSpace", "format_value", "render_override"]


@dataclass(frozen=True)
class SearchSpace:
    """An ordered tuple of :class:`ParamSpec`, in sampling order: a parameter after those its conditions name."""

    params: tuple[ParamSpec, ...] = field(default_factory=tuple)

    @classmethod
    def from_mapping(cls, data: Any, field_name: str = "space") -> SearchSpace:
        """Parse and validate the ``space`` mapping of a study file (:func:`~paraling.search.space_parse.parse_space`).

        Raises:
            ConfigError: Naming ``space.<key>`` and the offending value.
        """
        from paraling.search.space_parse import parse_space

        return cls(tuple(parse_space(data, field_name)))

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
