"""Optuna storages, the study lock, trial bookkeeping, heartbeats and stale-trial recovery.

Storages: a file path is an Optuna ``JournalStorage`` (the default: ``sweeps/<study>/journal.log``, one machine);
``sqlite:///…``, ``postgresql://…`` and ``mysql://…`` are ``RDBStorage`` with Optuna's heartbeat and
``RetryHeartbeatStaleTrialCallback(max_retry=1)``.

Every process that runs trials records a heartbeat per running trial plus its ``host``/``pid`` in the trial's
system attributes. Before taking a trial, a worker fails RUNNING trials whose worker is dead (same host, pid gone) or
whose heartbeat is older than the grace period (any host), and queues each for one retry (same parameters). The
"study lock" (a file lock next to a journal/SQLite file, a PostgreSQL advisory lock) makes "count the trials, then
ask for one" atomic, so parallel workers never overshoot ``n_trials``, and makes study creation happen once.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import socket
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from paraling.errors import SearchError
from paraling.secrets import mask_secrets

__all__ = [
    "HEARTBEAT_ATTR",
    "WORKER_ATTR",
    "Heartbeat",
    "TrialCounts",
    "count_trials",
    "create_or_load_study",
    "default_storage_path",
    "describe_storage",
    "fail_stale_trials",
    "is_rdb_url",
    "make_storage",
    "mark_worker",
    "retry_trial",
    "study_lock",
]

log = logging.getLogger(__name__)

HEARTBEAT_ATTR = "paraling:heartbeat"
WORKER_ATTR = "paraling:worker"
DEAD_RETRIES_ATTR = "paraling:dead_worker_retries"
_RDB_PREFIXES = ("sqlite:", "postgresql", "postgres:", "mysql", "mariadb", "oracle", "mssql")
_storages: dict[tuple[str, int, int], Any] = {}


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


def make_storage(url: str, heartbeat_interval: int = 30, grace_period: int = 120) -> Any:
    """Open (and cache per process) the storage behind ``url``.

    Raises:
        SearchError: The database cannot be reached or the journal file cannot be created.
    """
    key = (url, heartbeat_interval, grace_period)
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
            storage = optuna.storages.RDBStorage(
                sqlalchemy_url(url),
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
        raise _unreachable(url, exc) from None
    _storages[key] = storage
    return storage


def _unreachable(url: str, exc: BaseException) -> SearchError:
    detail = " ".join(mask_secrets(str(exc)).split())[:300]
    return SearchError(
        f"cannot open the Optuna storage {describe_storage(url)}: {detail}. Fix: check that the database server is "
        "running and reachable from this machine, and the URL's host, port, user and password (or use a journal "
        "file on one machine: --storage journal:PATH)"
    )


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
            raise _unreachable(url, exc) from None
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
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{target}.paraling.lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def create_or_load_study(url: str, spec: Any, sampler: Any = None, pruner: Any = None, create: bool = True) -> Any:
    """Create the study once (under the study lock) or load it; checks the stored direction.

    Raises:
        SearchError: The study exists with the other direction, or does not exist and ``create`` is false.
    """
    import optuna

    from paraling.search.spec import make_pruner, make_sampler

    storage = make_storage(url, spec.storage.heartbeat_interval, spec.storage.grace_period)
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


@dataclass
class TrialCounts:
    """Trial states of a study, with retried failures separated from real ones."""

    complete: int = 0
    pruned: int = 0
    failed: int = 0
    retried: int = 0
    running: int = 0
    waiting: int = 0
    fail_reasons: list[str] = field(default_factory=list)

    @property
    def used(self) -> int:
        """Trials that count toward ``n_trials``: finished (retried failures excluded), running and queued."""
        return self.complete + self.pruned + self.failed + self.running + self.waiting

    @property
    def finished(self) -> int:
        """COMPLETE + PRUNED + FAIL (retried failures excluded)."""
        return self.complete + self.pruned + self.failed


def count_trials(trials: list[Any]) -> TrialCounts:
    """Count states; a FAIL trial that was queued again (dead worker, Ctrl-C) counts as ``retried``, not ``failed``."""
    from optuna.trial import TrialState

    superseded = {n for t in trials for n in t.system_attrs.get("retry_history", [])}
    c = TrialCounts()
    for t in trials:
        if t.state == TrialState.COMPLETE:
            c.complete += 1
        elif t.state == TrialState.PRUNED:
            c.pruned += 1
        elif t.state == TrialState.RUNNING:
            c.running += 1
        elif t.state == TrialState.WAITING:
            c.waiting += 1
        elif t.state == TrialState.FAIL:
            if t.number in superseded:
                c.retried += 1
            else:
                c.failed += 1
                c.fail_reasons.append(f"trial {t.number}: {t.user_attrs.get('fail_reason', 'unknown')}")
    return c


def _process_start(pid: int) -> float | None:
    import psutil

    try:
        return float(psutil.Process(pid).create_time())
    except (psutil.NoSuchProcess, psutil.AccessDenied, ProcessLookupError):
        return None


def worker_identity() -> dict[str, Any]:
    """``{host, pid, start}`` of this process (``start`` guards against pid reuse)."""
    pid = os.getpid()
    return {"host": socket.gethostname(), "pid": pid, "start": _process_start(pid)}


def mark_worker(storage: Any, trial_id: int) -> None:
    """Record this process as the trial's worker and a first heartbeat."""
    storage.set_trial_system_attr(trial_id, WORKER_ATTR, worker_identity())
    _beat(storage, trial_id)


def _beat(storage: Any, trial_id: int) -> None:
    from optuna.storages._heartbeat import BaseHeartbeat, is_heartbeat_enabled

    if isinstance(storage, BaseHeartbeat) and is_heartbeat_enabled(storage):
        storage.record_heartbeat(trial_id)
    else:
        storage.set_trial_system_attr(trial_id, HEARTBEAT_ATTR, time.time())


class Heartbeat:
    """A daemon thread beating for the trials this process runs (journal: system attr; RDB: Optuna's table).

    Args:
        storage: The Optuna storage.
        interval: Seconds between beats.
    """

    def __init__(self, storage: Any, interval: float) -> None:
        self.storage, self.interval = storage, float(interval)
        self._ids: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, trial_id: int) -> None:
        """Start beating for ``trial_id`` (beats once at once)."""
        with self._lock:
            self._ids.add(trial_id)
        self._safe_beat(trial_id)
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="paraling-heartbeat", daemon=True)
            self._thread.start()

    def remove(self, trial_id: int) -> None:
        """Stop beating for ``trial_id``."""
        with self._lock:
            self._ids.discard(trial_id)

    def close(self) -> None:
        """Stop the thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _safe_beat(self, trial_id: int) -> None:
        try:
            _beat(self.storage, trial_id)
        except Exception as exc:  # storage hiccup; the next beat may succeed, the grace period absorbs it
            log.debug("heartbeat for trial id %d failed: %s", trial_id, exc)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            with self._lock:
                ids = list(self._ids)
            for tid in ids:
                self._safe_beat(tid)


def _is_stale(t: Any, now: float, grace: float, host: str, by_attr: bool) -> str | None:
    w = t.system_attrs.get(WORKER_ATTR) or {}
    if w.get("host") == host and w.get("pid"):
        start = _process_start(int(w["pid"]))
        if start is None or (w.get("start") is not None and abs(start - float(w["start"])) > 1.0):
            return f"worker {host}:{w['pid']} died (process gone)"
        return None
    if not by_attr:  # RDB: Optuna's heartbeat table decides (optuna.storages.fail_stale_trials)
        return None
    last = t.system_attrs.get(HEARTBEAT_ATTR)
    if last is None and t.datetime_start is not None:
        last = t.datetime_start.timestamp()
    if last is not None and now - float(last) > grace:
        who = f"{w.get('host')}:{w.get('pid')}" if w else "unknown worker"
        return f"no heartbeat from {who} for {now - float(last):.0f} s (grace period {grace:.0f} s)"
    return None


def retry_trial(study: Any, frozen: Any, max_retry: int | None = 1) -> bool:
    """Queue ``frozen`` (a failed trial) again with the same parameters.

    Args:
        study: The study.
        frozen: The failed trial.
        max_retry: Retries allowed per series for dead workers (``None``: always, used for Ctrl-C, which is not the
            trial's fault). Interrupted retries do not use up the dead-worker retry.

    Returns:
        Whether a retry was queued.
    """
    import optuna

    history = list(frozen.system_attrs.get("retry_history", []))
    dead = int(frozen.system_attrs.get(DEAD_RETRIES_ATTR, 0))
    if max_retry is not None and dead + 1 > max_retry:
        return False
    system_attrs = {k: v for k, v in frozen.system_attrs.items() if k not in (WORKER_ATTR, HEARTBEAT_ATTR)}
    system_attrs.setdefault("failed_trial", frozen.number)
    system_attrs["retry_history"] = [*history, frozen.number]
    system_attrs[DEAD_RETRIES_ATTR] = dead + (max_retry is not None)
    user_attrs = {k: v for k, v in frozen.user_attrs.items() if k not in ("fail_reason", "mlflow_run_id")}
    study.add_trial(
        optuna.create_trial(
            state=optuna.trial.TrialState.WAITING,
            params=frozen.params,
            distributions=frozen.distributions,
            user_attrs=user_attrs,
            system_attrs=system_attrs,
        )
    )
    return True


def fail_stale_trials(study: Any, grace_period: float) -> list[int]:
    """Fail RUNNING trials of dead workers and queue each for one retry.

    RDB storages first go through Optuna's own heartbeat check (:func:`optuna.storages.fail_stale_trials`, whose
    callback retries); then every storage gets paraling's check (dead pid on this host, or a heartbeat attribute
    older than ``grace_period`` from any host).

    Returns:
        Numbers of the trials failed here.
    """
    import optuna
    from optuna.storages._heartbeat import is_heartbeat_enabled
    from optuna.trial import TrialState

    storage = study._storage
    by_attr = not is_heartbeat_enabled(storage)
    before = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
    optuna.storages.fail_stale_trials(study)
    failed = []
    now, host = time.time(), socket.gethostname()
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        reason = _is_stale(t, now, grace_period, host, by_attr)
        if reason is None:
            continue
        try:
            storage.set_trial_user_attr(t._trial_id, "fail_reason", reason)
            if not storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another worker got there first
        log.warning("trial %d failed: %s; queued for one retry", t.number, reason)
        failed.append(t.number)
        retry_trial(study, storage.get_trial(t._trial_id))
    now_running = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
    by_optuna = sorted(before - now_running - set(failed))
    for n in by_optuna:
        t = study.get_trials(deepcopy=False)[n]
        if t.state == TrialState.FAIL and "fail_reason" not in t.user_attrs:
            with contextlib.suppress(Exception):
                storage.set_trial_user_attr(t._trial_id, "fail_reason", "no heartbeat within the grace period")
    return failed + [n for n in by_optuna if study.get_trials(deepcopy=False)[n].state == TrialState.FAIL]
