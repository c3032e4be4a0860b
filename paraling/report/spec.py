"""What a comparison report adds to its one row per run name: read from a report file, not from code.

A report file (``conf/report/<name>.yaml``, or any YAML path) holds the study-specific choices of
``paraling report``; the library's own defaults are neutral (no ensemble row, no pairs, no derived rows, the
2-class UAR from each run's ``corpus.negative_class``). ``conf/report/table1.yaml`` is the paper's Table 1::

    ensemble: [net0, net2, net3, net5]     # the ensemble row's members ([] for none)
    combiner: harmonic                     # how it combines them (paraling.ensemble.COMBINERS)
    negative_class: auto                   # 2-class UAR: auto (the runs' corpus.negative_class), a class, or null
    pairs: [[net2, net1], [ensemble, "@best-member"]]   # paired tests: is a better than b?
    vote_rows: {net2: {from: net3, vote: majority}}     # a row scored from another row's networks under a vote
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from paraling.config import CONF_DIR
from paraling.errors import ConfigError

__all__ = ["AUTO", "ReportSpec", "load_report_spec", "resolve_negative_class"]

AUTO = "auto"
"""``negative_class`` value: the runs' own ``corpus.negative_class`` (their ``paraling.negative_class`` tag)."""

_KEYS = ("ensemble", "combiner", "negative_class", "pairs", "vote_rows")


@dataclass(frozen=True)
class ReportSpec:
    """The study-specific parts of a report.

    Attributes:
        ensemble: Run names combined into an ensemble row (empty: none).
        combiner: A :data:`paraling.ensemble.COMBINERS` name.
        negative_class: The 2-class UAR's "no" class: :data:`AUTO`, a class name, or ``None`` (no 2-class columns).
        pairs: ``(a, b)`` rows to paired-test (``@best-member`` stands for the ensemble's best member).
        vote_rows: ``row -> (source row, vote)``: a row without runs of its own, scored from the source's runs.
    """

    ensemble: tuple[str, ...] = ()
    combiner: str = "harmonic"
    negative_class: str | None = AUTO
    pairs: tuple[tuple[str, str], ...] = ()
    vote_rows: Mapping[str, tuple[str, str]] = field(default_factory=dict)

    def as_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of :func:`paraling.report.table.build_report` this file sets."""
        return {
            "ensemble": list(self.ensemble),
            "combiner": self.combiner,
            "negative_class": self.negative_class,
            "pairs": list(self.pairs),
            "vote_rows": dict(self.vote_rows),
        }


def _path_of(name: str | Path) -> Path:
    path = Path(name)
    if path.suffix in (".yaml", ".yml"):
        return path
    return CONF_DIR / "report" / f"{name}.yaml"


def _names(value: Any, key: str, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{where}: {key} must be a list of run names, not {value!r}")
    return tuple(value)


def _pairs(value: Any, where: str) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, list):
        raise ConfigError(f"{where}: pairs must be a list of [a, b] row names, not {value!r}")
    out = []
    for pair in value:
        names = _names(pair, "each pair", where)
        if len(names) != 2:
            raise ConfigError(f"{where}: each pair names two rows, but got {pair!r}")
        out.append((names[0], names[1]))
    return tuple(out)


def _vote_rows(value: Any, where: str) -> dict[str, tuple[str, str]]:
    from paraling.scoring.aggregation import METHODS

    if not isinstance(value, dict):
        raise ConfigError(f"{where}: vote_rows must map a row name to {{from: ROW, vote: VOTE}}, not {value!r}")
    out = {}
    for row, rule in value.items():
        if not isinstance(rule, dict) or set(rule) != {"from", "vote"}:
            raise ConfigError(f"{where}: vote_rows.{row} must be {{from: ROW, vote: VOTE}}, not {rule!r}")
        if rule["vote"] not in METHODS:
            raise ConfigError(f"{where}: vote_rows.{row}.vote must be one of {list(METHODS)}, not {rule['vote']!r}")
        out[str(row)] = (str(rule["from"]), str(rule["vote"]))
    return out


def load_report_spec(name: str | Path) -> ReportSpec:
    """Read a report file: a name under ``conf/report/`` (``table1``) or a path ending in ``.yaml``.

    Raises:
        ConfigError: The file is missing, is not a mapping, or has an unknown key or a bad value (naming which).
    """
    import yaml

    from paraling.ensemble import COMBINERS

    path = _path_of(name)
    if not path.is_file():
        shipped = sorted(p.stem for p in (CONF_DIR / "report").glob("*.yaml"))
        raise ConfigError(f"no report file {path}; pass a .yaml path or one of {shipped}")
    where = str(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{where}: not valid UTF-8 YAML ({exc})") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: a report file is a mapping of {list(_KEYS)}")
    unknown = sorted(set(raw) - set(_KEYS))
    if unknown:
        raise ConfigError(f"{where}: unknown keys {unknown}; a report file may set {list(_KEYS)}")
    spec = ReportSpec()
    combiner = raw.get("combiner", spec.combiner)
    if combiner not in COMBINERS:
        raise ConfigError(f"{where}: combiner must be one of {list(COMBINERS)}, not {combiner!r}")
    negative = raw.get("negative_class", spec.negative_class)
    if negative is not None and (not isinstance(negative, str) or not negative):
        raise ConfigError(f"{where}: negative_class must be a class name, 'auto' or null, not {negative!r}")
    return ReportSpec(
        ensemble=_names(raw.get("ensemble", []), "ensemble", where),
        combiner=str(combiner),
        negative_class=negative,
        pairs=_pairs(raw.get("pairs", []), where),
        vote_rows=_vote_rows(raw.get("vote_rows", {}), where),
    )


def resolve_negative_class(negative_class: str | None, tags: Sequence[Mapping[str, str]]) -> str | None:
    """The class to use: ``negative_class`` itself, or with :data:`AUTO` the one the runs (their ``tags``) share.

    Raises:
        ConfigError: With :data:`AUTO`, runs that name different negative classes.
    """
    if negative_class != AUTO:
        return negative_class
    from paraling.tracking.runs import NEGATIVE_CLASS_TAG

    found = sorted({t[NEGATIVE_CLASS_TAG] for t in tags if t.get(NEGATIVE_CLASS_TAG)})
    if len(found) > 1:
        raise ConfigError(
            f"the runs name different negative classes {found} (their corpus.negative_class); pass one with "
            "--negative-class NAME, or --negative-class none"
        )
    return found[0] if found else None
