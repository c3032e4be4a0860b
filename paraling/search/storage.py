"""Optuna storages: which one a URL means, opening it (once per process), creating or loading a study.

A file path is an Optuna ``JournalStorage`` (the default: ``sweeps/<study>/journal.log``, one machine);
``sqlite:///…``, ``postgresql://…`` and ``mysql://…`` are ``RDBStorage`` with Optuna's heartbeat and
``RetryHeartbeatStaleTrialCallback(max_retry=1)``. The study lock is :mod:`.locks`; heartbeats, trial counts and
the recovery of trials whose worker died are :mod:`.recovery`.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

from paraling.errors import SearchError
from paraling.secrets import mask_secrets

__all__ = [
    "create_or_load_study",
    "default_storage_path",
    "describe_storage",
    "heartbeat_enabled",
    "is_rdb_url",
    "make_storage",
    "sqlalchemy_url",
    "study_storage",
    "unreachable",
]

log = logging.getLogger(__name__)

_RDB_PREFIXES = ("sqlite:", "postgresql", "postgres:", "mysql", "mariadb", "oracle", "mssql")
_storages: dict[tuple[str, int, int, int], Any] = {}


def is_rdb_url(url: str) -> bool:
    """Whether ``url`` is a SQLAlchemy URL (else it is a journal file path)."""
    return url.startswith(_RDB_PREFIXES)


def sqlalchemy_url(url: str) -> str:
    """``postgresql://`` with the installed driver: SQLAlchemy 2.1 defaults to psycopg 3, paraling ships psycopg2."""
    import importlib.util

    scheme = next((p for p in ("postgresql://", "postgres://") if url.startswith(p)), None)
    if scheme and importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2") is not None:
        return "postgresql+psycopg2://" + url[len(scheme) :]
    return url


def default_storage_path(study_name: str, study_file: Path | None) -> Path:
    """``<study file's folder>/<study>/journal.log``; for a packaged study (or none) ``./sweeps/<study>/journal.log``.

    A study that ships with paraling lives in the installed package, which is no place for a journal.
    """
    from paraling.config import SWEEPS_DIR

    packaged = study_file is not None and study_file.resolve().parent == SWEEPS_DIR
    folder = study_file.parent if study_file is not None and not packaged else Path("sweeps")
    return folder / study_name / "journal.log"


def describe_storage(url: str) -> str:
    """The URL with its password masked (safe for logs and MLflow tags)."""
    return mask_secrets(url)


def _quiet_optuna() -> None:
    import optuna

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", category=FutureWarning, module="optuna")
    optuna.logging.set_verbosity(optuna.logging.WARNING)


def make_storage(url: str, heartbeat_interval: int = 30, grace_period: int = 120, outage_timeout: int = 120) -> Any:
    """Open (and cache per process) the storage behind ``url``.

    A database storage waits out an outage of up to ``outage_timeout`` seconds in every later call
    (:mod:`paraling.search.outage`); it must answer now.

    Raises:
        SearchError: The database cannot be reached or the journal file cannot be created.
    """
    key = (url, heartbeat_interval, grace_period, outage_timeout)
    if key in _storages:
        return _storages[key]
    import optuna

    _quiet_optuna()
    try:
        if is_rdb_url(url):
            engine_kwargs: dict[str, Any] = {}
            if url.startswith("sqlite"):
                engine_kwargs["connect_args"] = {"timeout": 60}
            else:
                engine_kwargs["pool_pre_ping"] = True
            from paraling.search.outage import resilient_rdb_storage

            storage = resilient_rdb_storage(
                sqlalchemy_url(url),
                outage_timeout,
                engine_kwargs=engine_kwargs,
                heartbeat_interval=heartbeat_interval,
                grace_period=grace_period,
                heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1),
            )
        else:
            from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

            path = Path(url.removeprefix("journal:")).expanduser()
            path.parent.mkdir(parents=True, exist_ok=True)
            storage = optuna.storages.JournalStorage(
                JournalFileBackend(str(path), lock_obj=JournalFileOpenLock(str(path)))
            )
    except Exception as exc:  # sqlalchemy OperationalError, OSError, ...
        raise unreachable(url, exc) from None
    _storages[key] = storage
    return storage


def study_storage(url: str, settings: Any) -> Any:
    """:func:`make_storage` with a study's ``storage`` settings (heartbeat interval, grace period, outage timeout)."""
    return make_storage(url, settings.heartbeat_interval, settings.grace_period, settings.outage_timeout)


def unreachable(url: str, exc: BaseException) -> SearchError:
    detail = " ".join(mask_secrets(str(exc)).split())[:300]
    return SearchError(
        f"cannot open the Optuna storage {describe_storage(url)}: {detail}. Fix: check that the database server is "
        "running and reachable from this machine, and the URL's host, port, user and password (or use a journal "
        "file on one machine: --storage journal:PATH)"
    )


def heartbeat_enabled(storage: Any) -> bool:
    """Whether ``storage`` runs Optuna's own heartbeat (an ``RDBStorage`` opened with a heartbeat interval)."""
    import optuna

    return isinstance(storage, optuna.storages.RDBStorage) and storage.heartbeat_interval is not None


def create_or_load_study(url: str, spec: Any, sampler: Any = None, pruner: Any = None, create: bool = True) -> Any:
    """Create the study once (under the study lock) or load it; checks the stored direction.

    Raises:
        SearchError: The study exists with the other direction, or does not exist and ``create`` is false.
    """
    import optuna

    from paraling.search.samplers import make_pruner, make_sampler

    storage = study_storage(url, spec.storage)
    sampler = sampler if sampler is not None else make_sampler(spec.sampler, spec.space)
    pruner = pruner if pruner is not None else make_pruner(spec.pruner)
    try:
        if create:
            study = optuna.create_study(
                study_name=spec.study_name,
                storage=storage,
                sampler=sampler,
                pruner=pruner,
                direction=spec.direction,
                load_if_exists=True,
            )
        else:
            study = optuna.load_study(study_name=spec.study_name, storage=storage, sampler=sampler, pruner=pruner)
    except KeyError as exc:
        raise SearchError(f"study {spec.study_name!r} does not exist in {describe_storage(url)}") from exc
    want = (
        optuna.study.StudyDirection.MAXIMIZE if spec.direction == "maximize" else optuna.study.StudyDirection.MINIMIZE
    )
    if study.direction != want:
        raise SearchError(
            f"study {spec.study_name!r} in {describe_storage(url)} was created with direction="
            f"{study.direction.name.lower()}, but the study file says direction={spec.direction}; use another "
            "--study-name or storage"
        )
    return study
