"""Trial bookkeeping: counts, worker identity and heartbeats, and the recovery of trials whose worker died.

Every process that runs trials records a heartbeat per running trial plus its ``host``/``pid`` in the trial's
system attributes. Before taking a trial, a worker fails RUNNING trials whose worker is dead (same host, pid gone) or
whose heartbeat is older than the grace period (any host), and queues each for one retry (same parameters).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from paraling.search.outage import through_outages
from paraling.search.storage import heartbeat_enabled

__all__ = [
    "DEAD_RETRIES_ATTR",
    "HEARTBEAT_ATTR",
    "WORKER_ATTR",
    "Heartbeat",
    "TrialCounts",
    "count_trials",
    "fail_stale_trials",
    "frozen_trial",
    "mark_worker",
    "retry_trial",
    "trial_id",
    "worker_identity",
]

log = logging.getLogger(__name__)

HEARTBEAT_ATTR = "paraling:heartbeat"
WORKER_ATTR = "paraling:worker"
DEAD_RETRIES_ATTR = "paraling:dead_worker_retries"


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


def _optuna_retry() -> Any:
    """Optuna's retry callback class (``RetryHeartbeatStaleTrialCallback``), its experimental-API warnings quieted."""
    import warnings

    import optuna
    from optuna.storages import RetryHeartbeatStaleTrialCallback

    class _Retry(RetryHeartbeatStaleTrialCallback):
        def __init__(self, max_retry: int | None = None) -> None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                super().__init__(max_retry=max_retry)

        @staticmethod
        def retry_history(trial: Any) -> list[int]:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return list(RetryHeartbeatStaleTrialCallback.retry_history(trial))

    return _Retry


def count_trials(trials: list[Any]) -> TrialCounts:
    """Count states; a FAIL trial that was queued again (dead worker, Ctrl-C) counts as ``retried``, not ``failed``."""
    from optuna.trial import TrialState

    superseded = {n for t in trials for n in _optuna_retry().retry_history(t)}
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
    if heartbeat_enabled(storage):
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
    import copy

    dead = int(frozen.system_attrs.get(DEAD_RETRIES_ATTR, 0))
    if max_retry is not None and dead + 1 > max_retry:
        return False
    again = copy.copy(frozen)  # what the retry inherits: not the dead worker's liveness, reason or MLflow run
    again.system_attrs = {
        **{k: v for k, v in frozen.system_attrs.items() if k not in (WORKER_ATTR, HEARTBEAT_ATTR)},
        DEAD_RETRIES_ATTR: dead + (max_retry is not None),
    }
    again.user_attrs = {k: v for k, v in frozen.user_attrs.items() if k not in ("fail_reason", "mlflow_run_id")}
    # Optuna's own retry queues it (and writes its failed_trial / retry_history); the limit is paraling's, above
    _optuna_retry()(max_retry=None)(study, again)
    return True


def trial_id(storage: Any, study: Any, number: int) -> int:
    """The storage's id of trial ``number`` of ``study`` (through the storage's public API)."""
    return storage.get_trial_id_from_study_id_trial_number(storage.get_study_id_from_name(study.study_name), number)


def frozen_trial(study: Any, number: int) -> Any:
    """The current :class:`~optuna.trial.FrozenTrial` of trial ``number``."""
    return next(t for t in study.get_trials(deepcopy=False) if t.number == number)


def fail_stale_trials(study: Any, grace_period: float, storage: Any) -> list[int]:
    """Fail RUNNING trials of dead workers and queue each for one retry.

    RDB storages first go through Optuna's own heartbeat check (:func:`optuna.storages.fail_stale_trials`, whose
    callback retries); then every storage gets paraling's check (dead pid on this host, or a heartbeat attribute
    older than ``grace_period`` from any host).

    Returns:
        Numbers of the trials failed here.
    """
    import optuna
    from optuna.trial import TrialState

    by_attr = not heartbeat_enabled(storage)
    before = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
    through_outages(storage, optuna.storages.fail_stale_trials, study)
    failed = []
    now, host = time.time(), socket.gethostname()
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        reason = _is_stale(t, now, grace_period, host, by_attr)
        if reason is None:
            continue
        try:
            tid = trial_id(storage, study, t.number)
            storage.set_trial_user_attr(tid, "fail_reason", reason)
            if not storage.set_trial_state_values(tid, state=TrialState.FAIL):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another worker got there first
        log.warning("trial %d failed: %s; queued for one retry", t.number, reason)
        failed.append(t.number)
        retry_trial(study, frozen_trial(study, t.number))
    now_running = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
    by_optuna = sorted(before - now_running - set(failed))
    for n in by_optuna:
        t = study.get_trials(deepcopy=False)[n]
        if t.state == TrialState.FAIL and "fail_reason" not in t.user_attrs:
            with contextlib.suppress(Exception):
                storage.set_trial_user_attr(
                    trial_id(storage, study, t.number), "fail_reason", "no heartbeat within the grace period"
                )
    return failed + [n for n in by_optuna if study.get_trials(deepcopy=False)[n].state == TrialState.FAIL]
