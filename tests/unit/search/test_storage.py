"""Trial bookkeeping: counting toward n_trials, retries, stale-trial detection (dead pid, old heartbeat), the lock."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from paraling.search.locks import study_lock
from paraling.search.recovery import (
    HEARTBEAT_ATTR,
    WORKER_ATTR,
    Heartbeat,
    count_trials,
    fail_stale_trials,
    mark_worker,
    retry_trial,
)
from paraling.search.storage import make_storage

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _journal_study(tmp_path: Path) -> optuna.Study:
    storage = make_storage(str(tmp_path / "s" / "journal.log"), 1, 5)
    return optuna.create_study(study_name="s", storage=storage, direction="maximize")


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_count_trials_retried_failures_do_not_count(tmp_path: Path) -> None:
    study = _journal_study(tmp_path)
    t = study.ask()
    t.suggest_int("a", 0, 9)
    study.tell(t, 1.0)
    t = study.ask()
    t.suggest_int("a", 0, 9)
    study.tell(t, state=TrialState.PRUNED)
    t = study.ask()
    t.suggest_int("a", 0, 9)
    t.set_user_attr("fail_reason", "boom")
    failed = study.tell(t, state=TrialState.FAIL)
    c = count_trials(study.get_trials())
    assert (c.complete, c.pruned, c.failed, c.used) == (1, 1, 1, 3)
    assert c.fail_reasons == ["trial 2: boom"]
    assert retry_trial(study, failed)
    c = count_trials(study.get_trials())
    assert (c.failed, c.retried, c.waiting, c.used) == (0, 1, 1, 3)
    retry = study.ask()  # the queued retry comes first, with the same params
    assert retry.number == 3 and retry.params == failed.params
    again = study.tell(retry, state=TrialState.FAIL)
    assert not retry_trial(study, again)  # max_retry=1 per series
    assert again.system_attrs["retry_history"] == [2]


def test_stale_trials_dead_pid_and_old_heartbeat(tmp_path: Path) -> None:
    study = _journal_study(tmp_path)
    storage = study._storage
    dead = study.ask()
    dead.suggest_float("x", 0, 1)
    storage.set_trial_system_attr(
        dead._trial_id, WORKER_ATTR, {"host": __import__("socket").gethostname(), "pid": _dead_pid(), "start": 1.0}
    )
    alive = study.ask()
    mark_worker(storage, alive._trial_id)  # this process: alive, never stale
    remote = study.ask()
    storage.set_trial_system_attr(remote._trial_id, WORKER_ATTR, {"host": "elsewhere", "pid": 1, "start": 1.0})
    storage.set_trial_system_attr(remote._trial_id, HEARTBEAT_ATTR, time.time() - 60)
    fresh = study.ask()
    storage.set_trial_system_attr(fresh._trial_id, WORKER_ATTR, {"host": "elsewhere", "pid": 1, "start": 1.0})
    storage.set_trial_system_attr(fresh._trial_id, HEARTBEAT_ATTR, time.time())
    failed = fail_stale_trials(study, grace_period=5, storage=storage)
    assert sorted(failed) == [dead.number, remote.number]
    states = {t.number: t.state for t in study.get_trials()}
    assert states[alive.number] == TrialState.RUNNING and states[fresh.number] == TrialState.RUNNING
    reasons = {t.number: t.user_attrs.get("fail_reason", "") for t in study.get_trials()}
    assert "died" in reasons[dead.number] and "no heartbeat from elsewhere:1" in reasons[remote.number]
    waiting = study.get_trials(states=(TrialState.WAITING,))
    assert sorted(t.system_attrs["failed_trial"] for t in waiting) == [dead.number, remote.number]
    assert waiting[0].params  # same parameters again
    assert fail_stale_trials(study, grace_period=5, storage=storage) == []  # idempotent


def test_heartbeat_thread_updates_attr(tmp_path: Path) -> None:
    study = _journal_study(tmp_path)
    t = study.ask()
    hb = Heartbeat(study._storage, 0.2)
    hb.add(t._trial_id)
    first = study._storage.get_trial(t._trial_id).system_attrs[HEARTBEAT_ATTR]
    time.sleep(0.6)
    hb.remove(t._trial_id)
    hb.close()
    assert study._storage.get_trial(t._trial_id).system_attrs[HEARTBEAT_ATTR] > first


@pytest.mark.parametrize("kind", ["journal", "sqlite"])
def test_study_lock_serialises(tmp_path: Path, kind: str) -> None:
    url = str(tmp_path / "j.log") if kind == "journal" else f"sqlite:///{tmp_path / 'o.db'}"
    inside, overlap = [0], [False]

    def work() -> None:
        with study_lock(url, "s"):
            inside[0] += 1
            overlap[0] |= inside[0] > 1
            time.sleep(0.05)
            inside[0] -= 1

    threads = [threading.Thread(target=work) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not overlap[0]


def test_interrupted_trials_are_always_requeued_dead_workers_once(tmp_path: Path) -> None:
    study = _journal_study(tmp_path)
    t = study.ask()
    t.suggest_int("a", 0, 9)
    frozen = study.tell(t, state=TrialState.FAIL)
    for _ in range(3):  # Ctrl-C, Ctrl-C, Ctrl-C: re-queued every time
        assert retry_trial(study, frozen, max_retry=None)
        frozen = study.tell(study.ask(), state=TrialState.FAIL)
    assert retry_trial(study, frozen)  # then its worker dies: one retry ...
    frozen = study.tell(study.ask(), state=TrialState.FAIL)
    assert not retry_trial(study, frozen)  # ... and no second one
    c = count_trials(study.get_trials())
    assert (c.failed, c.retried, c.used) == (1, 4, 1)


def test_every_sampler_of_a_study_gets_its_own_slot_and_seed(tmp_path: Path) -> None:
    """Two `paraling sweep` commands of one study started together on one host used to derive the same seed (host,
    worker index and trials so far were equal) and ran identical parameter sets."""
    import optuna

    from paraling.search.storage import make_storage
    from paraling.search.worker import claim_sampler_slot, worker_seed

    storage = make_storage(str(tmp_path / "j.log"))
    study = optuna.create_study(study_name="s", storage=storage)
    first = claim_sampler_slot(storage, study)
    second = claim_sampler_slot(storage, study)
    assert first == (0, 0) and second == (1, 0)
    assert worker_seed(7, *first) == 7  # a solo sweep of a fresh study keeps the study's seed: reproducible
    assert worker_seed(7, *second) not in (7, None)
    assert worker_seed(7, 0, 3) != 7  # a resumed study does not start its sampler over
    assert worker_seed(None, 5, 5) is None
