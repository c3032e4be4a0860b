"""The compose stack publishes nothing beyond loopback by default and has no default database password."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

COMPOSE = Path(__file__).parents[2] / "docker" / "compose.yaml"


def test_ports_bind_to_loopback_unless_told_otherwise() -> None:
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    published = {name: s.get("ports", []) for name, s in services.items() if s.get("ports")}
    assert set(published) == {"postgres", "mlflow", "dashboard"}
    for name, ports in published.items():
        for p in ports:
            assert str(p).startswith("${PARALING_BIND:-127.0.0.1}:"), (name, p)


def test_the_database_password_is_required_and_has_no_default() -> None:
    text = COMPOSE.read_text()
    uses = re.findall(r"\$\{POSTGRES_PASSWORD([^}]*)\}", text)
    assert len(uses) >= 4 and all(u.startswith(":?") for u in uses), uses
    assert "paraling:paraling@" not in text and "change-me@" not in text


def test_workers_are_spread_over_the_gpus_not_stacked_on_one() -> None:
    """One worker container per machine sees every GPU and confines each of its worker processes to one
    (`--gpus`, `--trials-per-gpu`); replicas reserving `count: 1` each would all land on the same device."""
    worker = yaml.safe_load(COMPOSE.read_text())["services"]["worker"]
    command = worker["command"]
    assert "--gpus=${PARALING_GPUS:-all}" in command and "--trials-per-gpu=${PARALING_TRIALS_PER_GPU:-1}" in command
    (device,) = worker["deploy"]["resources"]["reservations"]["devices"]
    assert device["count"] == "all"
