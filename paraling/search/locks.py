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
from paraling.search.storage import is_rdb_url, sqlalchemy_url, unreachable

__all__ = ["study_lock"]


def _lock_key(name: str) -> int:
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big", signed=True)


_pg_engines: dict[str, Any] = {}


@contextlib.contextmanager
def study_lock(url: str, study_name: str) -> Iterator[None]:
    """Serialise "inspect trials, then ask" across workers of one study.

    A ``flock`` on ``<file>.paraling.lock`` for journal and SQLite storages (one machine), ``pg_advisory_lock`` for
    PostgreSQL (any number of machines). Other databases run unlocked (a worker may then overshoot ``n_trials`` by
    one trial).
    """
    if url.startswith(("postgresql", "postgres:")):
        import sqlalchemy

        engine = _pg_engines.get(url)
        if engine is None:
            engine = _pg_engines[url] = sqlalchemy.create_engine(
                sqlalchemy_url(url), poolclass=sqlalchemy.pool.NullPool
            )
        k = _lock_key(f"paraling-sweep:{study_name}")
        try:
            conn_cm = engine.connect()
        except sqlalchemy.exc.SQLAlchemyError as exc:
            raise unreachable(url, exc) from None
        with conn_cm as conn:
            conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": k})
            try:
                yield
            finally:
                conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": k})
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
