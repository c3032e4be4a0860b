"""Parsing the ``space`` of a study file into :class:`~paraling.search.param.ParamSpec` objects.

``foreach`` expands a key into one parameter per combination; conditions may name a parameter defined anywhere in
the space: the parameters are sampled in dependency order (a parameter after those its conditions name, file order
otherwise), so a study file whose keys a YAML tool sorted means the same; a cycle of conditions is an error.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from paraling.config_compat import rewrite_override
from paraling.errors import ConfigError
from paraling.search.conditions import Condition, parse_condition
from paraling.search.param import ParamSpec, format_value

__all__ = ["parse_space"]

_KEY = re.compile(r"^[+~]?[A-Za-z_][\w\-]*(\.(\w[\w\-]*))*$")
_PARAM_KEYS = {"type", "low", "high", "log", "step", "choices", "condition", "foreach"}


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


def parse_space(data: Any, field_name: str = "space") -> list[ParamSpec]:
    """The parameters of a ``space`` mapping, in sampling (dependency) order.

    Raises:
        ConfigError: Naming ``space.<key>`` and the offending value, or the parameters of a cycle of conditions.
    """
    if not isinstance(data, Mapping) or not data:
        raise ConfigError(f"{field_name} must be a non-empty mapping of config keys to parameters, but got {data!r}")
    expanded: list[tuple[str, Any, str]] = []
    for raw_name, body in data.items():
        if not isinstance(raw_name, str):
            raise ConfigError(f"{field_name}: keys must be config keys such as model.n_blocks, got {raw_name!r}")
        for old, b, where in _expand(raw_name, body, f"{field_name}.{raw_name}"):
            name = rewrite_override(f"{old}=x").partition("=")[0]  # model.name: [...] searches the model group
            if not _KEY.match(name):
                raise ConfigError(f"{where}: {name!r} is not a Hydra config key such as model.dropout_conv.1")
            if any(n == name for n, _, _ in expanded):
                raise ConfigError(f"{where}: parameter {name} is defined twice")
            expanded.append((name, b, where))
    names = [n for n, _, _ in expanded]
    params = [_parse_one(n, b, where, [m for m in names if m != n]) for n, b, where in expanded]
    return _dependency_order(params, field_name)


def _dependency_order(params: list[ParamSpec], field_name: str) -> list[ParamSpec]:
    """Each parameter after the parameters its conditions name; file order otherwise (Kahn's algorithm)."""
    needs = {p.name: {c.param for c in p.conditions} for p in params}
    done: set[str] = set()
    out: list[ParamSpec] = []
    pending = list(params)
    while pending:
        ready = next((p for p in pending if needs[p.name] <= done), None)
        if ready is None:
            cycle = sorted(p.name for p in pending if needs[p.name] - done)
            raise ConfigError(
                f"{field_name}: the conditions of {cycle} depend on each other in a cycle; a condition must name a "
                "parameter that does not (directly or through others) depend on it"
            )
        pending.remove(ready)
        done.add(ready.name)
        out.append(ready)
    return out
