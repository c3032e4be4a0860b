"""``paraling sweep``: validate, create the study and its MLflow parent run once, run the workers, summarise.

With one worker and no GPU the trial loop (:mod:`paraling.search.worker`) runs in this process; otherwise in
``multiprocessing`` *spawn* processes, each using ``cores // workers`` torch threads and, on a GPU machine, started
with ``CUDA_VISIBLE_DEVICES`` set to its one GPU (:mod:`paraling.search.gpus`: one worker per GPU by default,
``--trials-per-gpu K`` for K). Other machines join by running
the same command against the same PostgreSQL storage and MLflow server. Re-running the command resumes: only the
missing trials run.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from paraling.config_compat import rewrite_overrides
from paraling.errors import ParalingError, SearchError, StorageUnavailableError
from paraling.search.executors import ExecutorOptions, check_cluster_storage, submit_workers
from paraling.search.gpus import check_gpus, gpu_shares, plan_gpus, visible_gpus
from paraling.search.interrupts import interrupt_once, remember_interrupt, reset_interrupt
from paraling.search.locks import study_lock
from paraling.search.mlflow_parent import SweepTracking
from paraling.search.probe import check_against_config
from paraling.search.recovery import count_trials, fail_stale_trials
from paraling.search.spec import StudySpec
from paraling.search.storage import (
    create_or_load_study,
    default_storage_path,
    describe_storage,
    is_rdb_url,
    make_storage,
    study_storage,
)
from paraling.search.study_ensemble import assemble_for_study
from paraling.search.summary import SweepSummary
from paraling.search.trial import TrialContext, reproduce_line
from paraling.search.worker import WorkerArgs, compose_fn, hydra_context, run_processes, worker_loop
from paraling.secrets import mask_secrets
from paraling.tracking.ui import run_link

__all__ = ["PreparedStudy", "SweepOptions", "SweepSummary", "prepare_study", "run_sweep", "summarize"]

log = logging.getLogger("paraling.search")


@dataclass
class SweepOptions:
    """Command-line options of ``paraling sweep`` (``None`` keeps the study file's value)."""

    n_trials: int | None = None
    workers: int | None = None  # None: one per GPU x trials_per_gpu, or 1 without GPUs
    storage: str | None = None
    study_name: str | None = None
    timeout: float | None = None
    overrides: list[str] = field(default_factory=list)
    dashboard: bool = False
    dashboard_port: int = 8080
    gpus: list[str] | None = None  # None: every visible GPU; []: none
    trials_per_gpu: int = 1
    executor: ExecutorOptions | None = None  # None: worker processes on this machine; else submitit jobs


@dataclass
class PreparedStudy:
    """A created/loaded study with its trial context (the shared start of ``paraling sweep`` and the sweeper)."""

    spec: StudySpec
    url: str
    study: Any
    ctx: TrialContext
    tracking: SweepTracking | None


def _storage_of(url: str, spec: StudySpec) -> Any:
    """The (per-process cached) storage object of ``url`` with the study's heartbeat settings."""
    return study_storage(url, spec.storage)


def resolve_storage_url(spec: StudySpec) -> str:
    """``spec.storage.url`` or the default journal file (absolute, so workers in other folders agree)."""
    if spec.storage.url:
        return spec.storage.url
    return str(default_storage_path(spec.study_name, spec.path).resolve())


def prepare_study(spec: StudySpec, url: str, base_overrides: list[str], base_cfg: Any, command: str) -> PreparedStudy:
    """Create or load the study and its MLflow parent run (once, under the study lock); recover stale trials.

    Args:
        spec: The validated study.
        url: Storage URL or journal path.
        base_overrides: Study overrides + command-line overrides.
        base_cfg: The composed base configuration (its ``tracking`` node locates the parent run).
        command: The command line (parent run's ``paraling.reproduce`` tag).
    """
    from paraling.tracking.tracker import resolve_tracking_uri

    tracking = None
    uri = None
    if base_cfg is not None and bool(base_cfg.tracking.enabled):
        uri = resolve_tracking_uri(base_cfg.tracking.uri)
        tracking = SweepTracking(uri, str(base_cfg.tracking.experiment), spec.study_name)
    parent = None
    with study_lock(url, spec.study_name):
        study = create_or_load_study(url, spec)
        _record_space(study, spec)
        fail_stale_trials(study, spec.storage.grace_period, _storage_of(url, spec))
        if tracking is not None:
            parent = tracking.open_parent(study, spec, url, command)
            tracking.end_orphans(parent, study)
    ctx = TrialContext(
        spec,
        url,
        list(base_overrides),
        parent,
        uri,
        str(base_cfg.tracking.experiment) if base_cfg is not None else "paraling",
    )
    return PreparedStudy(spec, url, study, ctx, tracking)


def _record_space(study: Any, spec: StudySpec) -> None:
    desc = spec.space.describe()
    old = study.user_attrs.get("space")
    if old is None:
        study.set_user_attr("space", desc)
        study.set_user_attr("metric", spec.metric)
    elif old != desc:
        log.warning(
            "the search space of study %s changed since it was created; Optuna keeps the old trials and "
            "samples the new space from now on",
            spec.study_name,
        )
        study.set_user_attr("space", desc)


def summarize(prepared: PreparedStudy, stopped: str) -> SweepSummary:
    """Counts, best trial and reproduce line of the study."""
    spec, study = prepared.spec, prepared.study
    c = count_trials(study.get_trials(deepcopy=False))
    s = SweepSummary(
        spec.study_name,
        describe_storage(prepared.url),
        spec.metric,
        spec.direction,
        spec.n_trials,
        spec.max_failures,
        c.complete,
        c.pruned,
        c.failed,
        c.retried,
        c.running,
        c.waiting,
        parent_run_id=prepared.ctx.parent_run_id,
        tracking_uri=prepared.ctx.tracking_uri,
        parent_run_link=run_link(prepared.ctx.tracking_uri or "", prepared.ctx.parent_run_id or "")
        if prepared.ctx.parent_run_id
        else "",
        stopped=stopped,
        fail_reasons=c.fail_reasons,
    )
    if c.complete:
        best = study.best_trial
        s.best_number, s.best_value, s.best_params = best.number, best.value, dict(best.params)
        s.best_reproduce = str(best.user_attrs.get("reproduce") or reproduce_line(best.user_attrs.get("overrides", [])))
    return s


def _stop_reason(prepared: PreparedStudy, stopped: str | None) -> str:
    spec = prepared.spec
    c = count_trials(prepared.study.get_trials(deepcopy=False))
    if stopped == "interrupted":
        return stopped
    if c.failed >= spec.max_failures and (spec.n_trials is None or c.finished < spec.n_trials):
        return "failure_budget"
    if c.running:
        return "others_running"
    if spec.n_trials is not None and c.used >= spec.n_trials and not c.waiting:
        return "complete"
    if stopped == "timeout":
        return "timeout"
    return "workers_failed" if spec.n_trials is not None else "timeout"


def finish(prepared: PreparedStudy, stopped: str | None) -> SweepSummary:
    """Final recovery pass, parent run results and status, and the summary."""
    study = prepared.study
    with study_lock(prepared.url, prepared.spec.study_name, prepared.spec.storage.outage_timeout):
        fail_stale_trials(study, prepared.spec.storage.grace_period, _storage_of(prepared.url, prepared.spec))
        reason = _stop_reason(prepared, stopped)
        summary = summarize(prepared, reason)
        if prepared.tracking is not None and prepared.ctx.parent_run_id:
            status = {
                "complete": "FINISHED",
                "timeout": "FINISHED",
                "interrupted": "KILLED",
                "others_running": None,
            }.get(reason, "FAILED")
            try:
                prepared.tracking.end_orphans(prepared.ctx.parent_run_id, study)
                prepared.tracking.missing_children(prepared.ctx.parent_run_id, study)
                ensemble, t = prepared.spec.ensemble, prepared.tracking
                if reason == "complete" and ensemble is not None:
                    name = prepared.spec.study_name
                    assemble_for_study(ensemble, name, t.experiment, t.uri, prepared.ctx.parent_run_id, t.client)
                prepared.tracking.finalize(prepared.ctx.parent_run_id, study, summary, status)
            except Exception as exc:  # the Optuna study is the record; MLflow can be fixed by a re-run
                log.error("could not finalise the MLflow parent run %s: %s", prepared.ctx.parent_run_id, exc)
    return summary


def _start_dashboard(url: str, port: int) -> None:
    try:
        import optuna_dashboard
    except ImportError as exc:
        raise SearchError("--dashboard needs optuna-dashboard: pip install optuna-dashboard") from exc
    storage = url if is_rdb_url(url) else make_storage(url)
    t = threading.Thread(
        target=optuna_dashboard.run_server, args=(storage,), kwargs={"host": "127.0.0.1", "port": port}, daemon=True
    )
    t.start()
    log.info("optuna-dashboard: http://127.0.0.1:%d", port)


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    reset_interrupt()
    old = signal.signal(signal.SIGTERM, interrupt_once)
    old_int = signal.signal(signal.SIGINT, remember_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)
        signal.signal(signal.SIGINT, old_int)


def _run_jobs(
    prepared: PreparedStudy, spec: StudySpec, ex: ExecutorOptions, remaining: int | None, deadline: float | None
) -> str | None:
    """The workers as submitit jobs (``--executor local|slurm``); returns why the sweep stopped."""
    from pathlib import Path

    n = ex.jobs if remaining is None else min(ex.jobs, remaining)
    ctx = TrialContext(**{**prepared.ctx.__dict__, "quiet": True})
    args = [WorkerArgs(ctx, i, n, deadline, ex.cpus_per_job, None) for i in range(n)]
    folder = Path(ex.folder) if ex.folder else default_storage_path(spec.study_name, spec.path).parent / "submitit"
    reasons, failures = submit_workers(args, ex, folder.resolve())
    for reason in ("failure_budget", "timeout"):
        if reason in reasons:
            return reason
    return "jobs_failed" if failures else None  # finish() reads the study: complete despite a killed job is complete


def close_after_error(prepared: PreparedStudy, exc: BaseException) -> None:
    """A worker stopped on a service that went away: end the sweep's MLflow runs so that none stays RUNNING.

    With the storage down the study cannot be read, so the parent run is ended FAILED directly; otherwise the normal
    final pass runs (its own failures are logged, the original error is what the user sees).
    """
    parent = prepared.ctx.parent_run_id
    if not isinstance(exc, StorageUnavailableError):
        try:
            finish(prepared, "error")
            return
        except StorageUnavailableError:
            pass
        except Exception as err:  # the tracking server may be what is down: finish logs what it could not do
            log.error("could not close the sweep's runs: %s", mask_secrets(str(err)))
            return
    if prepared.tracking is not None and parent:
        prepared.tracking.abandon(parent, str(exc))


def run_sweep(spec: StudySpec, options: SweepOptions | None = None, command: str = "") -> SweepSummary:
    """Run or resume the study ``spec`` until ``n_trials``/``timeout`` is reached; returns the summary.

    Args:
        spec: The validated study (see :func:`~paraling.search.spec.load_study_spec`).
        options: Command-line options (workers, storage, extra overrides...).
        command: The command line, logged on the MLflow parent run.

    Raises:
        ConfigError: The study does not fit the configuration (before any trial runs).
        SearchError: The storage cannot be opened or the study conflicts with the file.
    """
    options = options or SweepOptions()
    options.overrides = rewrite_overrides(options.overrides)  # old selector names select the group's option
    visible = visible_gpus()
    gpus = visible if options.gpus is None or options.executor is not None else check_gpus(options.gpus, visible)
    plan = plan_gpus(gpus, options.trials_per_gpu, options.workers)
    spec = spec.with_options(options.n_trials, options.study_name, options.storage, options.timeout)
    url = resolve_storage_url(spec)
    if options.executor is not None:
        check_cluster_storage(url, options.executor.kind)  # before anything is created
    with hydra_context():
        base_cfg = check_against_config(spec, list(options.overrides), compose_fn())
    base = list(spec.overrides) + list(options.overrides)
    prepared = prepare_study(spec, url, base, base_cfg, command or f"paraling sweep {spec.path or spec.study_name}")
    if options.dashboard:
        _start_dashboard(url, options.dashboard_port)
    c = count_trials(prepared.study.get_trials(deepcopy=False))
    remaining = None if spec.n_trials is None else max(spec.n_trials - c.used, 0) + c.waiting  # queued retries too
    log.info(
        "study %s: %d trials finished (%d complete, %d pruned, %d failed), %d running, %d queued; %s to run",
        spec.study_name,
        c.finished,
        c.complete,
        c.pruned,
        c.failed,
        c.running,
        c.waiting,
        "until timeout" if remaining is None else remaining,
    )
    deadline = time.time() + spec.timeout if spec.timeout else None
    stopped: str | None = None
    with _sigterm_as_interrupt():
        try:
            if (remaining is None or remaining > 0) and c.failed < spec.max_failures:
                if options.executor is not None:
                    try:
                        stopped = _run_jobs(prepared, spec, options.executor, remaining, deadline)
                    except Exception:  # a job or the submission failed: the parent run still ends, the error shows
                        finish(prepared, "error")
                        raise
                    return finish(prepared, stopped)
                n = len(plan) if remaining is None else min(len(plan), remaining)
                threads = max(1, (os.cpu_count() or 1) // n) if n > 1 else None
                quiet = TrialContext(**{**prepared.ctx.__dict__, "quiet": n > 1})
                shares = gpu_shares(plan[:n])
                args = [WorkerArgs(quiet, i, n, deadline, threads, os.getpid(), plan[i], shares[i]) for i in range(n)]
                if n == 1 and plan[0] is None:  # no GPU to confine it to: the worker runs in this process
                    args[0].parent_pid = None
                    stopped = worker_loop(args[0], prepared.tracking)
                else:
                    stopped = run_processes(args)
        except KeyboardInterrupt:
            stopped = "interrupted"
        except ParalingError as exc:  # a service went away (storage past its outage budget, tracking server)
            close_after_error(prepared, exc)
            raise
        try:
            summary = finish(prepared, stopped)
        except StorageUnavailableError as exc:
            close_after_error(prepared, exc)
            raise
    return summary
