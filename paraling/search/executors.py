"""Sweep workers as cluster jobs: ``paraling sweep --executor slurm|local --jobs N`` through submitit.

Each job runs the ordinary worker loop (:func:`paraling.search.worker.worker_loop`) against the shared storage, so
there is no launcher batch barrier: a job takes the next trial as soon as it finishes one. The jobs are one submitit
job array (``slurm`` on a SLURM cluster, ``local`` runs the same jobs as local processes, for tests and single
machines). A job the scheduler stops (preemption, time limit) is requeued by submitit (the job is
:class:`submitit.helpers.Checkpointable`); the trial it was running is failed and queued again like a dead worker's,
by the first worker that sees its pid gone (same host) or its heartbeat stale (any host), and the requeued job takes
up the study again. The process that submitted the jobs waits for them and then closes the study's MLflow parent run.

Across cluster nodes only a database storage works: journal files and SQLite need one file system with working
locks, which cluster file systems do not promise, so ``--executor slurm`` refuses them.

The job files submitit writes (the pickled worker arguments) hold the storage URL and the tracking URI, passwords
included, because the jobs need them. They are private: the job folder is ``0700`` and everything in it ``0600``
(:func:`private_files`, also used for the Hydra submitit launcher's ``.submitit`` folder).
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from paraling.errors import SearchError
from paraling.search.storage import is_rdb_url

__all__ = ["EXECUTORS", "ExecutorOptions", "SweepJob", "check_cluster_storage", "private_files", "submit_workers"]

log = logging.getLogger("paraling.search")

EXECUTORS = ("process", "local", "slurm")


@dataclass
class ExecutorOptions:
    """How ``--executor local|slurm`` submits the workers.

    Attributes:
        kind: ``local`` or ``slurm``.
        jobs: Jobs in the array (each one worker).
        folder: Where submitit keeps job files and logs (default: ``<study folder>/submitit``).
        partition: SLURM partition (``--slurm-partition``).
        gpus_per_job: GPUs per job (``--slurm-gpus-per-job``); a job's worker sees only its own.
        time_min: Time limit of a job in minutes (``--slurm-time``); a job stopped at the limit is requeued.
        cpus_per_job: CPU cores per job (torch threads follow them).
        signal_delay_s: Seconds before the limit at which SLURM signals the job to requeue itself.
        extra: More submitit parameters (``slurm_qos``, ``slurm_account``, ...).
    """

    kind: str = "local"
    jobs: int = 1
    folder: str | None = None
    partition: str | None = None
    gpus_per_job: int = 0
    time_min: int = 24 * 60
    cpus_per_job: int | None = None
    signal_delay_s: int = 120
    extra: dict[str, Any] = field(default_factory=dict)


def check_cluster_storage(url: str, kind: str) -> None:
    """Refuse storages that cannot be shared by the nodes of a cluster.

    Raises:
        SearchError: ``kind`` is ``slurm`` and ``url`` is a journal file or SQLite.
    """
    if kind == "slurm" and (not is_rdb_url(url) or url.startswith("sqlite")):
        raise SearchError(
            "--executor slurm runs workers on several nodes, which cannot share a journal file or an SQLite "
            "database; use PostgreSQL: --storage postgresql://USER:PASSWORD@HOST:5432/optuna (docs/sweeps.md, "
            "'Many machines')"
        )


def _make_private(folder: Path) -> None:
    """``0700`` folders and ``0600`` files under ``folder`` (links are left alone: never follow them)."""
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        with contextlib.suppress(OSError):
            os.chmod(dirpath, 0o700)
        for name in filenames:
            f = Path(dirpath) / name
            with contextlib.suppress(OSError):
                if stat.S_ISREG(f.lstat().st_mode):
                    os.chmod(f, 0o600)
        dirnames[:] = [d for d in dirnames if not (Path(dirpath) / d).is_symlink()]


@contextlib.contextmanager
def private_files(folder: Path) -> Iterator[None]:
    """Files written under ``folder`` in the block (and by processes started in it) readable by this user only.

    The umask is ``077`` inside the block (submitit's pickles, local jobs and, through SLURM's umask propagation, the
    cluster jobs' own files); what already exists under ``folder`` is made private before and after.
    """
    folder.mkdir(parents=True, exist_ok=True)
    _make_private(folder)
    old = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(old)
        _make_private(folder)


class SweepJob:
    """One worker as a submitit job; requeued by submitit when the scheduler preempts it or its time runs out."""

    def __call__(self, args: Any) -> str:
        """Run the worker loop; returns why it stopped."""
        from paraling.search.worker import setup_worker_process, worker_loop

        setup_worker_process(args, f"job{args.index}")
        return worker_loop(args)

    def checkpoint(self, args: Any) -> Any:
        """What submitit resubmits on preemption or timeout: the same worker (it resumes the study)."""
        import submitit

        log.warning("job %d: preempted or out of time; requeued (its trial is failed and retried)", args.index)
        return submitit.helpers.DelayedSubmission(self, args)


def submit_workers(worker_args: list[Any], options: ExecutorOptions, folder: Path) -> tuple[list[str], list[str]]:
    """Submit one job per worker as a job array and wait for all of them.

    A job that failed (killed, crashed) is logged with its log file, not raised: its trial is failed and queued
    again by the other workers (dead worker), so the study may well be complete; whether it is, the caller reads from
    the study.

    Args:
        worker_args: One :class:`~paraling.search.worker.WorkerArgs` per job.
        options: Executor settings.
        folder: The job folder (submitit writes ``%j`` sub-folders there).

    Returns:
        ``(reasons, failures)``: why each finished job's worker stopped, and one line per failed job.
    """
    import submitit

    executor = submitit.AutoExecutor(folder=str(folder / "%j"), cluster=options.kind)
    params: dict[str, Any] = {
        "name": "paraling-sweep",
        "timeout_min": int(options.time_min),
        "gpus_per_node": int(options.gpus_per_job),
        "tasks_per_node": 1,
    }
    if options.cpus_per_job:
        params["cpus_per_task"] = int(options.cpus_per_job)
    if options.kind == "slurm":
        params["slurm_signal_delay_s"] = int(options.signal_delay_s)
        params["slurm_array_parallelism"] = len(worker_args)
        if options.partition:
            params["slurm_partition"] = options.partition
    executor.update_parameters(**params, **options.extra)
    with private_files(folder):  # the pickled arguments hold the storage and tracking passwords
        jobs = executor.map_array(SweepJob(), worker_args)
    log.info("submitted %d %s jobs: %s (logs in %s)", len(jobs), options.kind, [j.job_id for j in jobs], folder)
    reasons, failed = [], []
    try:
        for job in jobs:
            try:
                reasons.append(str(job.result()))
            except Exception as exc:  # submitit.core.utils.FailedJobError and friends: the job's own error
                failed.append(f"job {job.job_id}: {' '.join(str(exc).split())[:300]} (log: {job.paths.stderr})")
    except KeyboardInterrupt:  # Ctrl-C here stops the jobs too (their trials are recorded as interrupted)
        for job in jobs:
            job.cancel(check=False)
        raise
    _make_private(folder)  # result pickles and logs the jobs wrote
    for f in failed:
        log.warning("sweep job failed: %s", f)
    return reasons, failed
