"""Riding out a database storage that stops answering for a while (a PostgreSQL restart, a failover, a network blip).

Two places wait through :class:`OutageRetry`: every new database connection of the storage's engine (SQLAlchemy's
``do_connect`` event, so every storage call, including those Optuna's caching layer makes, waits for the database
instead of failing; the pool's pre-ping drops the connections the outage broke), and every call of the storage's
public API (which also covers a call whose connection broke mid-query). A call that fails because the database cannot
be reached (SQLAlchemy's ``OperationalError``, ``InterfaceError``, ``DisconnectionError`` or an invalidated
connection, also when Optuna wraps them in ``StorageInternalError``) is retried with a bounded exponential back-off
(0.5 s doubling to 8 s) for up to ``storage.outage_timeout`` seconds (default 120). The outage is logged once when it
starts and once when it ends, instead of a traceback per call. When the database stays away longer, the call raises one
:class:`~paraling.errors.StorageUnavailableError` line; the sweep then ends its MLflow runs and stops, and the trials
the database still shows as RUNNING are failed and queued again by the next run (heartbeats, docs/crash-safety.md).

Other errors (a constraint violation, a bug) are not retried. A database that cannot be reached when a sweep *starts*
is not waited for either: that is one line at once (:func:`paraling.search.storage.unreachable`).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from paraling.errors import StorageUnavailableError
from paraling.secrets import mask_secrets

__all__ = ["OutageRetry", "is_outage", "resilient_rdb_storage", "through_outages"]

log = logging.getLogger("paraling.search")

_T = TypeVar("_T")
_FIRST_WAIT, _MAX_WAIT = 0.5, 8.0


def is_outage(exc: BaseException) -> bool:
    """Whether ``exc`` (or what it wraps) says the database could not be reached, rather than that a call was wrong."""
    from sqlalchemy import exc as sa

    e: BaseException | None = exc
    for _ in range(6):
        if e is None:
            return False
        if isinstance(e, sa.OperationalError | sa.InterfaceError | sa.DisconnectionError):
            return True
        if isinstance(e, sa.DBAPIError) and e.connection_invalidated:
            return True
        e = e.__cause__ or e.__context__
    return False


class OutageRetry:
    """Calls retried while the storage is unreachable, for at most ``timeout`` seconds per call.

    Args:
        url: The storage URL (masked in messages).
        timeout: Seconds a call may wait for the database to come back.
        sleep: The wait function (tests pass a fake clock's).
        clock: Monotonic clock.
    """

    def __init__(
        self,
        url: str,
        timeout: float = 120.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url, self.timeout, self.sleep, self.clock = mask_secrets(url), float(timeout), sleep, clock
        self.outages = 0

    def call(self, fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        """``fn(*args, **kwargs)``, waiting out an outage of the database.

        Raises:
            StorageUnavailableError: The database did not answer for ``timeout`` seconds.
        """
        start: float | None = None
        wait = _FIRST_WAIT
        while True:
            try:
                result = fn(*args, **kwargs)
            except Exception as exc:
                if not is_outage(exc):
                    raise
                now = self.clock()
                detail = " ".join(mask_secrets(str(getattr(exc, "__cause__", None) or exc)).split())[:200]
                if start is None:
                    start = now
                    self.outages += 1
                    log.warning(
                        "the Optuna storage %s is not answering (%s); retrying for up to %.0f s",
                        self.url,
                        detail,
                        self.timeout,
                    )
                if now - start + wait > self.timeout:
                    raise StorageUnavailableError(
                        f"the Optuna storage {self.url} did not answer for {now - start:.0f} s ({detail}). Fix: bring "
                        "the database back, then re-run the same command: the study resumes, and trials left "
                        "RUNNING are failed and queued again (storage.outage_timeout sets how long a sweep waits)"
                    ) from None
                self.sleep(wait)
                wait = min(wait * 2, _MAX_WAIT)
                continue
            if start is not None:
                log.warning("the Optuna storage %s answers again after %.0f s", self.url, self.clock() - start)
            return result


def _retried(name: str) -> Callable[..., Any]:
    def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        return self.outage.call(getattr(super(type(self), self), name), *args, **kwargs)

    method.__name__ = name
    return method


@functools.cache
def _storage_class() -> type:
    """An ``optuna.storages.RDBStorage`` whose every storage and heartbeat call goes through :class:`OutageRetry`
    (a subclass, so that Optuna's own caching and heartbeat checks still recognise it)."""
    import optuna
    from optuna.storages import BaseStorage

    names = [
        n
        for base in (BaseStorage, optuna.storages.RDBStorage)
        for n, v in vars(base).items()
        if callable(v) and not n.startswith("_") and n not in ("remove_session", "upgrade", "get_current_version")
    ]
    body: dict[str, Any] = {n: _retried(n) for n in dict.fromkeys(names)}
    body["__doc__"] = _storage_class.__doc__
    return type("ResilientRDBStorage", (optuna.storages.RDBStorage,), body)


def resilient_rdb_storage(url: str, timeout: float, **kwargs: Any) -> Any:
    """An ``RDBStorage`` over ``url`` (``kwargs`` as for Optuna's) that waits out database outages up to ``timeout``.

    The database must answer now: opening is not retried (a sweep that cannot reach its storage stops at once).
    """
    from sqlalchemy import event
    from sqlalchemy import exc as sa

    storage = _storage_class()(url, **kwargs)
    storage.outage = outage = OutageRetry(url, timeout)

    def connect(dialect: Any, conn_rec: Any, cargs: Any, cparams: Any) -> Any:
        def attempt() -> Any:
            try:
                return dialect.connect(*cargs, **cparams)
            except dialect.loaded_dbapi.OperationalError as exc:  # the driver's own "cannot connect"
                raise sa.OperationalError("connect", None, exc) from exc

        return outage.call(attempt)

    event.listen(storage.engine, "do_connect", connect)
    return storage


def through_outages(storage: Any, fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
    """``fn(*args, **kwargs)`` retried through ``storage``'s outages (plainly called for other storages): for
    library functions that work on a study as a whole (``optuna.storages.fail_stale_trials``)."""
    outage = getattr(storage, "outage", None)
    return outage.call(fn, *args, **kwargs) if isinstance(outage, OutageRetry) else fn(*args, **kwargs)
