"""Conditions of a search space: ``model.n_blocks >= 3``, ``aggregation.kind in [weighted, mean]``.

A conditional parameter is sampled only when its condition holds for the parameters sampled before it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from paraling.errors import ConfigError

__all__ = ["Condition", "parse_condition"]

_OPS = ("not in", "in", "==", "!=", "<=", ">=", "<", ">")
_COND = re.compile(
    r"^\s*(?P<left>\S+?)(?:\s+(?P<word>not\s+in|in)\s+|\s*(?P<sym>==|!=|<=|>=|<|>)\s*)(?P<right>[^<>=!\s].*?)\s*$"
)


@dataclass(frozen=True)
class Condition:
    """``left op right`` where one side names a parameter and the other is a YAML literal."""

    param: str
    op: str
    literal: Any
    param_on_left: bool
    text: str

    def holds(self, values: Mapping[str, Any]) -> bool:
        """Whether the condition is true for the sampled ``values`` (false when the parameter is inactive)."""
        if self.param not in values:
            return False
        a, b = (values[self.param], self.literal) if self.param_on_left else (self.literal, values[self.param])
        try:
            if self.op == "==":
                return bool(a == b)
            if self.op == "!=":
                return bool(a != b)
            if self.op == "<":
                return bool(a < b)
            if self.op == "<=":
                return bool(a <= b)
            if self.op == ">":
                return bool(a > b)
            if self.op == ">=":
                return bool(a >= b)
            if self.op == "in":
                return a in b
            return a not in b
        except TypeError:
            return False


def parse_condition(text: str, where: str, known: Sequence[str]) -> list[Condition]:
    """``a >= 3 and b in [x, y]`` as :class:`Condition` objects; each must name a parameter in ``known``."""
    out = []
    for part in re.split(r"\s+and\s+", text.strip()):
        m = _COND.match(part)
        if not m:
            raise ConfigError(
                f"{where}: cannot parse condition {part!r}; write 'PARAM OP VALUE' with OP one of {list(_OPS)}, "
                "e.g. 'model.n_blocks >= 3'"
            )
        left, op, right = m["left"], re.sub(r"\s+", " ", m["word"] or m["sym"]), m["right"]
        if left in known:
            param, lit_text, on_left = left, right, True
        elif right in known:
            param, lit_text, on_left = right, left, False
        else:
            raise ConfigError(
                f"{where}: condition {part!r} must name another parameter of the space "
                f"(parameters: {list(known) or 'none'})"
            )
        try:
            literal = yaml.safe_load(lit_text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{where}: bad literal {lit_text!r} in condition {part!r}: {exc}") from exc
        if op in ("in", "not in") and on_left and not isinstance(literal, list):
            raise ConfigError(f"{where}: '{op}' needs a list on its right, e.g. 'x in [1, 2]', but got {lit_text!r}")
        out.append(Condition(param, op, literal, on_left, part))
    return out
