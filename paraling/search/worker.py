"""Sweep workers: the trial loop, spawned worker processes and their replacement after a crash.

Each worker loops: under the study lock it fails stale trials (dead workers), checks the failure budget and
``n_trials``, and asks Optuna for the next trial; then it runs the trial outside the lock with a heartbeat. SIGTERM
(sent by the coordinating ``paraling sweep`` on Ctrl-C) becomes ``KeyboardInterrupt`` once, so the running trial is
recorded as interrupted.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import multiprocessing as mp
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from paraling.config import hydra_context
from paraling.errors import ParalingError
from paraling.search.gpus import worker_env
from paraling.search.interrupts import interrupt_once
from paraling.search.locks import study_lock
from paraling.search.mlflow_parent import SweepTracking
from paraling.search.recovery import Heartbeat, count_trials, fail_stale_trials, mark_worker, trial_id
from paraling.search.samplers import make_pruner, make_sampler
from paraling.search.storage import create_or_load_study, study_storage
from paraling.search.trial import TrialContext, execute_trial
from paraling.secrets import install_log_masking, mask_secrets

__all__ = [
    "WorkerArgs",
    "claim_sampler_slot",
    "compose_fn",
    "hydra_context",
    "interrupt_once",
    "run_processes",
    "worker_loop",
    "worker_main",
    "worker_seed",
]

log = logging.getLogger("paraling.search")


@dataclass
class WorkerArgs:
    """What a worker process needs (picklable)."""

    ctx: TrialContext
    index: int
    n_workers: int
    deadline: float | None
    threads: int | None
    parent_pid: int | None = None
    gpu: str | None = None  # CUDA_VISIBLE_DEVICES of the worker process (None: inherited)
    gpu_share: float | None = None  # its share of that GPU's memory (1/K with K workers on it)


SLOT_ATTR = "paraling:sampler_slots"


def claim_sampler_slot(storage: Any, study: Any) -> tuple[int, int]:
    """Number this sampler among all samplers the study has ever had; call it under the study lock.

    Returns:
        ``(slot, n_before)``: how many samplers were started before this one (a counter in the study's system
        attributes, so two ``paraling sweep`` commands started together on one host get different numbers) and how
        many trials the study holds.
    """
    sid = storage.get_study_id_from_name(study.study_name)
    slot = int(storage.get_study_system_attrs(sid).get(SLOT_ATTR, 0))
    storage.set_study_system_attr(sid, SLOT_ATTR, slot + 1)
    return slot, len(study.get_trials(deepcopy=False))


def worker_seed(seed: int | None, slot: int, n_before: int = 0) -> int | None:
    """The sampler seed of the ``slot``-th sampler of a study (:func:`claim_sampler_slot`).

    The study's own seed for its first sampler on a fresh study (a solo sweep is reproducible); otherwise one derived
    from it, the slot and ``n_before``. Concurrent samplers must not share a seed, or their random start-up samples
    coincide, and a resumed study must not start its sampler over, or it repeats the parameter sets it already tried.
    """
    if seed is None or (slot == 0 and n_before == 0):
        return seed
    h = hashlib.blake2b(f"{seed}:{slot}:{n_before}".encode(), digest_size=4).digest()
    return int.from_bytes(h, "big") % (2**31)


def compose_fn() -> Callable[[list[str]], Any]:
    from hydra import compose

    from paraling.config_compat import rewrite_overrides

    return lambda overrides: compose("config", overrides=rewrite_overrides(overrides))


def worker_loop(args: WorkerArgs, tracking: SweepTracking | None = None) -> str:
    """Take and run trials until the study is done; returns why it stopped.

    Args:
        args: The worker's settings.
        tracking: An open :class:`SweepTracking` to reuse (in-process worker), else one is opened here.

    Returns:
        ``complete``, ``timeout``, ``failure_budget`` or ``orphaned`` (the coordinating process died).
    """
    ctx, spec = args.ctx, args.ctx.spec
    storage = study_storage(ctx.storage_url, spec.storage)
    study = create_or_load_study(ctx.storage_url, spec, None, make_pruner(spec.pruner), create=False)
    with study_lock(ctx.storage_url, spec.study_name, spec.storage.outage_timeout):
        slot, n_before = claim_sampler_slot(storage, study)
    study.sampler = make_sampler(spec.sampler, spec.space, worker_seed(spec.sampler.seed, slot, n_before))
    if tracking is None and ctx.parent_run_id and ctx.tracking_uri:
        tracking = SweepTracking(ctx.tracking_uri, ctx.experiment, spec.study_name)
    heartbeat = Heartbeat(storage, spec.storage.heartbeat_interval)
    sync = tracking.child_sync(ctx.parent_run_id) if tracking else None
    try:
        with hydra_context():
            compose = compose_fn()
            while True:
                if args.deadline is not None and time.time() >= args.deadline:
                    return "timeout"
                if args.parent_pid is not None and os.getppid() != args.parent_pid:
                    return "orphaned"
                with study_lock(ctx.storage_url, spec.study_name, spec.storage.outage_timeout):
                    stale = fail_stale_trials(study, spec.storage.grace_period, storage)
                    if stale and tracking is not None and ctx.parent_run_id:
                        tracking.end_orphans(ctx.parent_run_id, study)
                    c = count_trials(study.get_trials(deepcopy=False))
                    if c.failed >= spec.max_failures:
                        return "failure_budget"
                    if spec.n_trials is not None and c.used >= spec.n_trials and not c.waiting:
                        return "complete"  # queued retries (dead worker, Ctrl-C) still run: they replace a FAIL
                    trial = study.ask()
                    tid = trial_id(storage, study, trial.number)
                    mark_worker(storage, tid)
                heartbeat.add(tid)
                try:
                    values = spec.space.suggest(trial)
                    overrides = ctx.base_overrides + spec.space.overrides(values)
                    execute_trial(study, trial, ctx, overrides, compose, sync)
                finally:
                    heartbeat.remove(tid)
    finally:
        heartbeat.close()


def setup_worker_process(args: WorkerArgs, label: str) -> None:
    """Logging (lines prefixed ``[label]``, secrets masked) and torch threads of a process that runs one worker."""
    logging.basicConfig(
        level=logging.INFO, format=f"%(asctime)s %(levelname)s [{label}] %(name)s: %(message)s", force=True
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)
    install_log_masking()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)


def worker_main(args: WorkerArgs) -> None:
    """Entry point of a spawned worker: SIGTERM (sent by the coordinator on Ctrl-C) stops it cleanly."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the terminal's Ctrl-C goes to the coordinator, which forwards it
    signal.signal(signal.SIGTERM, interrupt_once)
    setup_worker_process(args, f"w{args.index}")
    try:
        reason = worker_loop(args)
        log.info("worker %d stopped: %s", args.index, reason)
    except KeyboardInterrupt:
        sys.exit(130)
    except ParalingError as exc:
        print(mask_secrets(f"paraling: error: [w{args.index}] {exc}"), file=sys.stderr)
        sys.exit(2)
    sys.exit(0)


def run_processes(args_list: list[WorkerArgs]) -> str | None:
    """Run the workers; a worker that dies (SIGKILL, OOM killer, crash) is replaced once per worker slot.

    The replacement first fails the dead worker's trial (its pid is gone) and queues the retry, so the study still
    reaches ``n_trials`` without a re-run.
    """
    from multiprocessing.connection import wait

    ctx = mp.get_context("spawn")
    procs: dict[Any, tuple[Any, WorkerArgs]] = {}

    def start(a: WorkerArgs) -> None:
        p = ctx.Process(target=worker_main, args=(a,), name=f"paraling-sweep-w{a.index}")
        with worker_env(a.gpu, a.gpu_share):  # a spawned child starts with the parent's environment at start()
            p.start()
        procs[p.sentinel] = (p, a)

    for a in args_list:
        start(a)
    gpus = [a.gpu for _, a in procs.values()]
    on = f" on GPUs {gpus}" if any(g is not None for g in gpus) else ""
    log.info("started %d workers%s: pids %s", len(procs), on, [p.pid for p, _ in procs.values()])
    restarts = 0
    try:
        while procs:
            for sentinel in wait(list(procs)):
                p, a = procs.pop(sentinel)
                p.join()
                code = p.exitcode
                if code in (0, None):
                    continue
                how = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
                log.warning("%s (pid %s) ended abnormally (%s)", p.name, p.pid, how)
                in_time = a.deadline is None or time.time() < a.deadline
                if (code < 0 or code == 1) and restarts < len(args_list) and in_time:
                    restarts += 1
                    log.warning("starting a replacement for %s; its trial is failed and retried once", p.name)
                    start(a)
    except KeyboardInterrupt:
        log.warning("interrupted: stopping workers (their current trials are recorded as FAIL, interrupted)")
        alive = [p for p, _ in procs.values() if p.is_alive()]
        for p in alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p.pid, signal.SIGTERM)
        with contextlib.suppress(KeyboardInterrupt):
            for p in alive:
                p.join(timeout=60)
        for p in alive:
            if p.is_alive():
                p.kill()
                p.join()
        return "interrupted"
    return None
