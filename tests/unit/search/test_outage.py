"""Waiting out a database storage that stops answering: which errors are outages, the bounded back-off, one line."""

from __future__ import annotations

import logging

import optuna
import pytest
from sqlalchemy import exc as sa

from paraling.errors import StorageUnavailableError
from paraling.search.outage import OutageRetry, is_outage


def _down() -> sa.OperationalError:
    return sa.OperationalError("SELECT 1", {}, ConnectionRefusedError("connection refused"))


def _wrapped() -> optuna.exceptions.StorageInternalError:
    try:
        try:
            raise _down()
        except sa.OperationalError as e:
            raise optuna.exceptions.StorageInternalError("An exception is raised during the commit.") from e
    except optuna.exceptions.StorageInternalError as outer:
        return outer


def test_connection_failures_are_outages_and_mistakes_are_not() -> None:
    assert is_outage(_down()) and is_outage(_wrapped())  # Optuna wraps SQLAlchemy's errors
    assert is_outage(sa.InterfaceError("x", {}, Exception("closed")))
    assert not is_outage(sa.IntegrityError("INSERT", {}, Exception("duplicate key")))
    assert not is_outage(ValueError("bad value"))


class _Clock:
    def __init__(self) -> None:
        self.t = 0.0
        self.waits: list[float] = []

    def sleep(self, s: float) -> None:
        self.waits.append(s)
        self.t += s

    def now(self) -> float:
        return self.t


def test_an_outage_is_waited_out_with_a_bounded_back_off(caplog: pytest.LogCaptureFixture) -> None:
    clock = _Clock()
    retry = OutageRetry("postgresql://u:hunter2@db/optuna", 120, clock.sleep, clock.now)
    failures = iter([_down()] * 6)

    def call(x: int) -> int:
        e = next(failures, None)
        if e is not None:
            raise e
        return x * 2

    with caplog.at_level(logging.WARNING, logger="paraling.search"):
        assert retry.call(call, 21) == 42
    assert clock.waits == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]  # doubling, capped
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2 and "is not answering" in lines[0] and "answers again after" in lines[1]
    assert "hunter2" not in " ".join(lines) and "***" in lines[0]


def test_an_outage_longer_than_the_budget_is_one_line() -> None:
    clock = _Clock()
    retry = OutageRetry("postgresql://db/optuna", 10, clock.sleep, clock.now)

    def down() -> None:
        raise _wrapped()

    with pytest.raises(StorageUnavailableError, match=r"did not answer for \d+ s .* re-run the same command"):
        retry.call(down)
    assert sum(clock.waits) <= 10


def test_other_errors_are_not_retried() -> None:
    clock = _Clock()
    retry = OutageRetry("sqlite:///x.db", 60, clock.sleep, clock.now)

    def wrong() -> None:
        raise sa.IntegrityError("INSERT", {}, Exception("duplicate"))

    with pytest.raises(sa.IntegrityError):
        retry.call(wrong)
    assert clock.waits == []


def test_database_storages_retry_every_call(tmp_path) -> None:
    """The storage paraling opens for a database is still an RDBStorage (Optuna's heartbeat and caching recognise it),
    and every storage call goes through the outage retry."""
    from paraling.search.storage import make_storage

    storage = make_storage(f"sqlite:///{tmp_path / 'o.db'}", 30, 120, 7)
    assert isinstance(storage, optuna.storages.RDBStorage) and storage.outage.timeout == 7
    calls = []
    real = storage.outage.call

    def spy(fn, *a, **k):
        calls.append(getattr(fn, "__name__", "?"))
        return real(fn, *a, **k)

    storage.outage.call = spy
    study = optuna.create_study(storage=storage, study_name="o")
    assert "create_new_study" in calls  # a public storage call
    storage.engine.dispose()  # the pool's connections are gone (as after a database restart)
    calls.clear()
    study.enqueue_trial({})  # Optuna's caching layer calls the storage's private methods: the connection waits
    assert "attempt" in calls
