"""Every `paraling train` line of the README and docs/ parses as Hydra overrides; plain ones compose and validate."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from paraling.config_checks import validate

ROOT = Path(__file__).parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _train_lines() -> list[str]:
    """``paraling train ...`` commands of the shell code blocks of the README and docs/ (continuations joined)."""
    lines, fence, text = [], None, ""
    for raw in "\n".join(p.read_text() for p in DOCS).splitlines():
        if raw.startswith("```"):
            fence = None if fence is not None else (raw[3:].strip() or "sh")
            continue
        if fence in ("bash", "sh"):
            text += raw[:-1] + " " if raw.endswith("\\") else raw + "\n"
    for cmd in text.splitlines():
        if cmd.strip().startswith("paraling train"):
            lines.append(cmd.strip())
    return lines


LINES = _train_lines()


def test_the_readme_has_train_examples() -> None:
    assert len(LINES) >= 8


@pytest.mark.parametrize("line", LINES)
def test_readme_train_example(line: str, compose_cfg) -> None:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    args = shlex.split(line, comments=True)[2:]
    overrides = [a for a in args if a not in ("-m", "--multirun")]
    parsed = OverridesParser.create().parse_overrides(overrides)  # raises on a syntax error (e.g. an unquoted regex)
    plain = not any(o.is_sweep_override() for o in parsed) and not any(
        o.key_or_group.startswith(("hydra", "+sweep")) or o.key_or_group == "sweep" for o in parsed
    )
    if plain:
        validate(compose_cfg(overrides))
