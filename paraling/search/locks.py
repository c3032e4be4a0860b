"""The study lock: "count the trials, then ask for one" as one step across every worker of a study.

A ``flock`` on ``<file>.paraling.lock`` beside a journal or SQLite storage (one machine), ``pg_advisory_lock`` for
PostgreSQL (any number of machines); other databases run unlocked (a worker may then overshoot ``n_trials`` by one).
It also makes study creation happen once.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from paraling.filelock import file_lock
from paraling.search.outage import OutageRetry, is_outage
from paraling.search.storage import is_rdb_url, sqlalchemy_url, unreachable

__all__ = ["study_lock"]


def _lock_key(name: str) -> int:
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big", signed=True)


_pg_engines: dict[str, Any] = {}
_pg_reached: set[str] = set()  # databases this process has locked once: later outages are waited out


@contextlib.contextmanager
def _pg_lock(url: str, study_name: str, outage_timeout: float) -> Iterator[None]:
    import sqlalchemy

    engine = _pg_engines.get(url)
    if engine is None:
        engine = _pg_engines[url] = sqlalchemy.create_engine(sqlalchemy_url(url), poolclass=sqlalchemy.pool.NullPool)
    k = _lock_key(f"paraling-sweep:{study_name}")

    def acquire() -> Any:
        conn = engine.connect()
        try:
            conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": k})
        except BaseException:
            conn.close()
            raise
        return conn

    try:
        conn = OutageRetry(url, outage_timeout).call(acquire) if url in _pg_reached else acquire()
    except sqlalchemy.exc.SQLAlchemyError as exc:
        raise unreachable(url, exc) from None
    _pg_reached.add(url)
    try:
        yield
    finally:
        try:
            conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": k})
        except sqlalchemy.exc.SQLAlchemyError as exc:
            if not is_outage(exc):
                raise  # else the lock ended with the connection: the server releases a session's locks
        finally:
            conn.close()


@contextlib.contextmanager
def study_lock(url: str, study_name: str, outage_timeout: float = 120.0) -> Iterator[None]:
    """Serialise "inspect trials, then ask" across workers of one study.

    A ``flock`` on ``<file>.paraling.lock`` for journal and SQLite storages (one machine), ``pg_advisory_lock`` for
    PostgreSQL (any number of machines). Other databases run unlocked (a worker may then overshoot ``n_trials`` by
    one trial). A PostgreSQL lock this process has taken before waits out an outage of up to ``outage_timeout``
    seconds (:mod:`paraling.search.outage`); the first one must succeed at once.
    """
    if url.startswith(("postgresql", "postgres:")):
        with _pg_lock(url, study_name, outage_timeout):
            yield
        return
    if url.startswith("sqlite:///") and ":memory:" not in url:
        target: Path | None = Path(url[len("sqlite:///") :])
    elif is_rdb_url(url):
        target = None
    else:
        target = Path(url.removeprefix("journal:"))
    if target is None:
        yield
        return
    with file_lock(f"{target}.paraling.lock"):
        yield
