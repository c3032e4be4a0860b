"""pyproject.toml's torch requirement admits the builds GPU machines already have, so installing keeps them."""

from __future__ import annotations

from pathlib import Path

import tomllib
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]


def _requirements() -> dict[str, Requirement]:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return {r.name: r for r in map(Requirement, deps)}


def test_torch_and_torchaudio_are_ranges_that_admit_every_tested_build() -> None:
    req = _requirements()
    for version in ("2.11.0", "2.13.0", "2.14.1"):  # the lent GPU machines' build; the two on this project's disk
        assert req["torch"].specifier.contains(version), f"torch {version} is not admitted by {req['torch']}"
    assert req["torchaudio"].specifier.contains("2.11.0")
    assert not any(s.operator in ("==", "===") for name in ("torch", "torchaudio") for s in req[name].specifier)
