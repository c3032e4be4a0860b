"""The batch loop of the ``paraling_optuna`` Hydra sweeper: ask a batch, launch it, settle what the jobs left.

:class:`BatchLoop` asks Optuna for up to ``n_jobs`` trials under the study lock (failing stale trials first and
stopping on the failure budget or the trial count), turns each into a launcher job (its overrides, the trial number
and, with GPUs, its device and share in ``hydra.job.env_set``), launches the batch and fails every trial a job left
RUNNING (it died, or raised before telling Optuna). A combination that does not compose fails alone, not the batch;
a tracking or storage outage stops the loop after its trial was queued again.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from paraling.errors import StorageUnavailableError, TrackingStoreError
from paraling.search.recovery import frozen_trial
from paraling.secrets import mask_obj, mask_secrets

__all__ = ["SERVICE_DOWN", "TRIAL_ENV", "BatchLoop", "settle"]

log = logging.getLogger("paraling.search")

TRIAL_ENV = "PARALING_SWEEP_TRIAL"
#: Job errors after which every next trial would fail the same way: the loop stops.
SERVICE_DOWN = (TrackingStoreError, StorageUnavailableError)


def job_error(ret: Any) -> BaseException | None:
    """The exception a launcher job ended with (Hydra keeps it on its JobReturn), or ``None``."""
    err = getattr(ret, "_return_value", None)
    return err if isinstance(err, BaseException) else None


class Failed:
    """Stands in for a JobReturn when the launcher raised."""

    def __init__(self, exc: BaseException) -> None:
        self._return_value = exc


def settle(study: Any, trial: Any, ret: Any, sync: Callable[[Any], None] | None) -> None:
    """A job that died or raised before telling Optuna leaves its trial RUNNING: fail it with the job's error."""
    from optuna.trial import TrialState

    frozen = frozen_trial(study, trial.number)
    if frozen.state != TrialState.RUNNING:
        return
    err = job_error(ret)
    reason = f"launcher job failed: {type(err).__name__}: {err}" if err else "launcher job ended without reporting"
    trial.set_user_attr("fail_reason", mask_secrets(reason)[:2000])
    frozen = study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
    if sync:
        try:
            sync(frozen)
        except Exception as exc:  # MLflow hiccups must not lose the Optuna record
            log.warning("trial %d: could not update its MLflow run: %s", trial.number, exc)
    log.info("trial %d FAIL (%s)", trial.number, reason)


@dataclass
class BatchLoop:
    """Runs a prepared study's trials through a Hydra launcher, ``n_jobs`` at a time.

    Attributes:
        prepared: The prepared study (:func:`paraling.search.runner.prepare_study`).
        url: Its storage URL.
        storage: Its storage object.
        launcher: The instantiated Hydra launcher.
        base: Overrides every trial starts from.
        load: Composes a trial's overrides (raises when they do not compose).
        n_jobs: Trials per batch.
        gpus: GPU ids the jobs are confined to (``[]``: none), one per job, round robin.
        sweep_dir: The multirun folder (a submitit launcher writes its job files there).
        pickles: Whether the launcher pickles the trial context into ``sweep_dir`` (submitit).
        sync: Mirrors a finished trial into MLflow (``None`` without tracking).
    """

    prepared: Any
    url: str
    storage: Any
    launcher: Any
    base: list[str]
    load: Callable[[list[str]], Any]
    n_jobs: int
    gpus: list[str]
    sweep_dir: Path
    pickles: bool
    sync: Callable[[Any], None] | None
    results: list[Any] = field(default_factory=list)
    job_idx: int = 0
    pending: list[Any] = field(default_factory=list)
    ids: dict[int, int] = field(default_factory=dict)  # trial number -> storage id, of the pending batch

    def run(self, heartbeat: Any, deadline: float | None) -> str | None:
        """Batches until the study is done; the stop reason (``None``: no reason of its own, see ``finish``).

        Raises:
            KeyboardInterrupt: After queueing the running batch's trials for a retry.
            Exception: A launcher or service failure, after failing the running batch's trials.
        """
        try:
            while True:
                if deadline is not None and time.time() >= deadline:
                    return "timeout"
                trials = self.ask()
                if isinstance(trials, str):
                    return trials
                for t in trials:
                    heartbeat.add(self.ids[t.number])
                try:
                    self.launch(trials)
                finally:
                    for t in trials:
                        heartbeat.remove(self.ids[t.number])
                self.pending = []
        except KeyboardInterrupt:
            self.requeue()
            raise
        except Exception as exc:
            if not isinstance(exc, StorageUnavailableError):
                for t in self.pending:
                    settle(self.study, t, Failed(exc), self.sync)
            raise

    @property
    def study(self) -> Any:
        """The Optuna study."""
        return self.prepared.study

    @property
    def spec(self) -> Any:
        """The study spec."""
        return self.prepared.spec

    def ask(self) -> list[Any] | str:
        """The next batch (their storage ids in :attr:`ids`), or the reason to stop."""
        from paraling.search.locks import study_lock
        from paraling.search.recovery import count_trials, fail_stale_trials, mark_worker, trial_id

        spec, study, ctx = self.spec, self.study, self.prepared.ctx
        with study_lock(self.url, spec.study_name, spec.storage.outage_timeout):
            stale = fail_stale_trials(study, spec.storage.grace_period, self.storage)
            if stale and self.prepared.tracking and ctx.parent_run_id:
                self.prepared.tracking.end_orphans(ctx.parent_run_id, study)
            c = count_trials(study.get_trials(deepcopy=False))
            if c.failed >= spec.max_failures:
                return "failure_budget"
            # queued retries (dead worker, Ctrl-C) count in c.used but still have to run
            k = self.n_jobs if spec.n_trials is None else min(self.n_jobs, max(spec.n_trials - c.used, 0) + c.waiting)
            if k <= 0:
                return "complete"
            self.pending = [study.ask() for _ in range(k)]
            self.ids = {t.number: trial_id(self.storage, study, t.number) for t in self.pending}
            for t in self.pending:
                mark_worker(self.storage, self.ids[t.number])
        return self.pending

    def launch(self, trials: Sequence[Any]) -> None:
        """Launch the trials that compose as one batch and settle each job's trial.

        Raises:
            TrackingStoreError | StorageUnavailableError: A job found a service down (its trial is queued again).
        """
        batch: list[list[str]] = []
        launched: list[Any] = []
        for t in trials:
            overrides = self.base + self.spec.space.overrides(self.spec.space.suggest(t))
            if self.fails_to_compose(t, overrides):
                continue
            batch.append([*overrides, *self.job_env(t.number, len(batch))])
            launched.append(t)
        if not batch:
            return
        from paraling.search.executors import private_files

        # a submitit launcher pickles the trial context (storage password) into its job folder
        with private_files(self.sweep_dir) if self.pickles else contextlib.nullcontext():
            rets = self.launcher.launch(batch, initial_job_idx=self.job_idx)
        self.job_idx += len(batch)
        self.results.append(rets)
        for t, ret in zip(launched, rets, strict=False):
            settle(self.study, t, ret, self.sync)
        down = next((e for e in map(job_error, rets) if isinstance(e, SERVICE_DOWN)), None)
        if down is not None:
            raise down

    def fails_to_compose(self, trial: Any, overrides: list[str]) -> bool:
        """Fail ``trial`` alone (and say so) when its overrides do not compose."""
        from optuna.trial import TrialState

        try:
            self.load(overrides)
        except Exception as exc:
            reason = f"does not compose: {' '.join(str(exc).split())[:500]}"
            trial.set_user_attr("overrides", mask_obj(overrides))
            trial.set_user_attr("fail_reason", mask_secrets(reason))
            frozen = self.study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
            if self.sync:
                self.sync(frozen)
            log.info("trial %d FAIL (%s)", trial.number, reason)
            return True
        return False

    def job_env(self, number: int, slot: int) -> list[str]:
        """The ``hydra.job.env_set`` overrides of a job: its trial and, with GPUs, its device and share."""
        from paraling.search.gpus import gpu_env, gpu_shares

        env = [f"++hydra.job.env_set.{TRIAL_ENV}={number}"]
        if self.gpus:  # a fresh local process per job: one GPU each, as `paraling sweep` gives one per worker
            shares = gpu_shares([self.gpus[j % len(self.gpus)] for j in range(self.n_jobs)])
            j = slot % self.n_jobs
            job_env = gpu_env(self.gpus[j % len(self.gpus)], shares[j])
            env += [f"++hydra.job.env_set.{k}={v}" for k, v in job_env.items()]
        return env

    def requeue(self) -> None:
        """Ctrl-C: fail the running batch's trials and queue each for a retry."""
        from optuna.trial import TrialState

        from paraling.search.recovery import retry_trial

        for t in self.pending:
            frozen = frozen_trial(self.study, t.number)
            if frozen.state == TrialState.RUNNING:
                t.set_user_attr("fail_reason", "interrupted (Ctrl-C); queued for a retry")
                frozen = self.study.tell(t, state=TrialState.FAIL, skip_if_finished=True)
                retry_trial(self.study, frozen, max_retry=None)
                if self.sync:
                    self.sync(frozen)
