"""One trial: compose its configuration, run the experiment, report per-epoch values, prune, tell Optuna.

The same :func:`execute_trial` runs inside ``paraling sweep`` workers (which compose the configuration with Hydra's
compose API) and inside Hydra launcher jobs of the ``paraling_optuna`` sweeper (whose configuration the launcher
composed), so both paths give the same trial records and the same MLflow parent/child structure.
"""

from __future__ import annotations

import contextlib
import logging
import math
import shlex
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from paraling.errors import Pruned, SearchError, StorageUnavailableError, TrackingStoreError
from paraling.search.gpus import GPU_ATTR, GPU_TAG, apply_gpu_share, require_assigned_gpu, trial_gpu
from paraling.search.interrupts import interrupt_requested
from paraling.search.spec import StudySpec
from paraling.secrets import mask_obj, mask_secrets

__all__ = ["TrialContext", "TrialOutcome", "TrialReporter", "execute_trial", "reproduce_line"]

log = logging.getLogger("paraling.search")


def sets_key(overrides: list[str], key: str) -> bool:
    """Whether ``overrides`` set ``key`` (``key=v``, ``+key=v``, ``++key=v``)."""
    return any(o.lstrip("+").split("=", 1)[0].strip() == key for o in overrides)


def trial_defaults(cfg: Any, overrides: list[str]) -> None:
    """What a sweep trial does differently from ``paraling train`` unless its overrides say otherwise.

    ``trainer.deterministic`` is off: deterministic cuDNN/cuBLAS kernels cost 10-30% of every GPU trial, and a search
    compares configurations, not bit-exact reruns (``paraling train`` keeps it on; a study sets
    ``trainer.deterministic=true`` in its ``overrides`` to have it).
    """
    if not sets_key(overrides, "trainer.deterministic"):
        cfg.trainer.deterministic = False


def reproduce_line(overrides: list[str]) -> str:
    """``paraling train o1 o2 ...`` with shell quoting (copy-paste safe)."""
    return " ".join(["paraling", "train", *(shlex.quote(o) for o in overrides)])


@dataclass
class TrialContext:
    """Everything a process needs to run trials of one study (picklable: sent to workers and launcher jobs).

    Attributes:
        spec: The validated study.
        storage_url: Optuna storage (journal path or database URL; may hold a password, never logged unmasked).
        base_overrides: Study overrides followed by command-line overrides.
        parent_run_id: MLflow parent run of the study (``None`` when tracking is disabled).
        tracking_uri: Resolved MLflow tracking URI of the parent run.
        experiment: MLflow experiment of the parent run.
        quiet: Turn per-epoch progress bars off (several workers share a terminal).
        label: Prefix of log lines (``w0``...).
    """

    spec: StudySpec
    storage_url: str
    base_overrides: list[str] = field(default_factory=list)
    parent_run_id: str | None = None
    tracking_uri: str | None = None
    experiment: str = "paraling"
    quiet: bool = False
    label: str = ""


@dataclass
class TrialOutcome:
    """What happened to a trial (returned by launcher jobs to the Hydra sweeper)."""

    number: int
    state: str
    value: float | None = None
    reason: str = ""
    run_id: str | None = None
    seconds: float = 0.0


class TrialReporter:
    """A :class:`paraling.training.loop.Reporter` that reports ``prune_on`` to Optuna and raises ``Pruned``.

    The step is ``fold * epochs + epoch``, monotone over the folds of a cross-validation, so the pruner compares
    trials at the same fold and epoch.

    Args:
        trial: The live :class:`optuna.trial.Trial`.
        epochs: Epochs per fold (``trainer.epochs``).
        key: Per-epoch metric to report (``val_uar``).
    """

    def __init__(self, trial: Any, epochs: int, key: str = "val_uar") -> None:
        self.trial, self.epochs, self.key = trial, max(int(epochs), 1), key
        self.last_step: int | None = None

    def on_epoch_end(self, fold: int, epoch: int, metrics: dict[str, float]) -> None:
        """Report ``metrics[key]`` at step ``fold * epochs + epoch``; raise ``Pruned`` when the pruner says so."""
        value = metrics.get(self.key)
        if value is None or not math.isfinite(float(value)):
            return
        step = int(fold) * self.epochs + int(epoch)
        self.trial.report(float(value), step)
        self.last_step = step
        if self.trial.should_prune():
            raise Pruned(f"trial {self.trial.number} pruned at fold {fold}, epoch {epoch} ({self.key}={value:.4f})")


@contextlib.contextmanager
def _no_sigint() -> Iterator[None]:
    """Ignore further Ctrl-C while recording an interrupted trial (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


def _metric_value(result: Any, metric: str) -> float:
    value = result.uar if metric == "uar" else result.metrics.get(metric)
    if value is None:
        raise SearchError(f"metric {metric!r} is not among the run's results {sorted(result.metrics)}")
    value = float(value)
    if not math.isfinite(value):
        raise SearchError(f"metric {metric} is {value}; a trial needs a finite value")
    return value


def execute_trial(
    study: Any,
    trial: Any,
    ctx: TrialContext,
    overrides: list[str],
    make_cfg: Callable[[list[str]], Any],
    sync: Callable[[Any], None] | None = None,
) -> TrialOutcome:
    """Run one trial to a final Optuna state (COMPLETE, PRUNED or FAIL) and return what happened.

    Exceptions of the experiment (bad combination, ``TrainingError`` on NaN loss, CUDA out-of-memory) make the trial
    FAIL with the reason in the ``fail_reason`` user attribute and the child run's ``paraling.error`` tag. Ctrl-C makes
    it FAIL as interrupted, queues it for a retry and re-raises ``KeyboardInterrupt``. A service that went away (the
    tracking server after MLflow's retries, the storage after its outage budget) is not the trial's fault: the trial
    is failed and queued again like a dead worker's (not charged to ``n_trials`` or the failure budget), and the
    error is re-raised so that the worker stops instead of failing every remaining trial within seconds.

    Args:
        study: The Optuna study.
        trial: The live trial (asked here or loaded from storage in a launcher job).
        ctx: The trial context.
        overrides: All Hydra overrides of the trial (logged as its ``paraling train`` line).
        make_cfg: Composes the configuration from ``overrides``.
        sync: Called with the finished :class:`~optuna.trial.FrozenTrial` (aligns the MLflow child run).
    """
    tags = _start(trial, ctx, overrides)
    t0 = time.perf_counter()
    outcome = TrialOutcome(trial.number, "FAIL")
    interrupted = False
    service_down: BaseException | None = None
    try:
        _run(trial, ctx, overrides, make_cfg, tags, outcome)
    except Pruned as exc:
        outcome.state, outcome.reason = "PRUNED", str(exc)
    except KeyboardInterrupt:
        interrupted = True
        outcome.reason = "interrupted (Ctrl-C); queued for a retry"
    except (TrackingStoreError, StorageUnavailableError) as exc:
        service_down = exc
        outcome.reason = mask_secrets(f"a service went away, queued for a retry: {exc}")
    except Exception as exc:  # the sweep goes on: any error of one trial is that trial's FAIL
        if interrupt_requested():  # the interrupt landed in a library's clean-up and was replaced by this error
            interrupted = True
            outcome.reason = "interrupted (Ctrl-C); queued for a retry"
        else:
            outcome.reason = mask_secrets(f"{type(exc).__name__}: {exc}".strip())
    finally:
        _free_memory()  # every trial: the next one (or the trial beside it on this GPU) gets the cached memory back
    outcome.seconds = time.perf_counter() - t0
    with _no_sigint() if interrupted else contextlib.nullcontext():
        _record(study, trial, ctx, outcome, sync, retry=interrupted or service_down is not None)
    value = f" {ctx.spec.metric}={outcome.value:.4f}" if outcome.value is not None else ""
    why = f" ({outcome.reason})" if outcome.reason and outcome.state != "COMPLETE" else ""
    log.info("%strial %d %s%s in %.1f s%s", _prefix(ctx), trial.number, outcome.state, value, outcome.seconds, why)
    if interrupted:
        raise KeyboardInterrupt
    if service_down is not None:
        raise service_down
    return outcome


def _start(trial: Any, ctx: TrialContext, overrides: list[str]) -> dict[str, str]:
    """Record the trial's overrides and reproduce line, log its start; the child run's tags."""
    trial.set_user_attr("overrides", mask_obj(list(overrides)))
    trial.set_user_attr("reproduce", mask_secrets(reproduce_line(list(overrides))))
    shown = " ".join(f"{k}={v}" for k, v in trial.params.items())
    log.info("%strial %d started: %s", _prefix(ctx), trial.number, shown)
    tags = {"paraling.sweep.study": ctx.spec.study_name, "paraling.sweep.trial": str(trial.number)}
    gpu = trial_gpu()
    if gpu is not None:  # what this process was confined to (a worker's or a launcher job's CUDA_VISIBLE_DEVICES)
        trial.set_user_attr(GPU_ATTR, gpu)
        tags[GPU_TAG] = gpu
    return tags


def _run(
    trial: Any,
    ctx: TrialContext,
    overrides: list[str],
    make_cfg: Callable[[list[str]], Any],
    tags: dict[str, str],
    outcome: TrialOutcome,
) -> None:
    """Compose and run the trial's experiment (raises what it raises); a finished run fills ``outcome``."""
    from paraling.pipeline.experiment import run_experiment

    require_assigned_gpu()
    share = apply_gpu_share()
    if share is not None:  # K trials on this GPU: each capped at 1/K of its memory
        trial.set_user_attr("gpu_share", share)
        tags["paraling.gpu_share"] = f"{share:.3f}"
    cfg = make_cfg(list(overrides))
    trial_defaults(cfg, list(overrides))
    if ctx.quiet:
        cfg.progress = "never"
    # One MLflow run per trial: no per-epoch checkpoints, whose run_id file would make a later trial with the same
    # configuration (or a retry) re-open this trial's run. A retried trial starts over.
    cfg.trainer.checkpoint = False
    reporter = TrialReporter(trial, int(cfg.trainer.epochs), ctx.spec.prune_on)
    result = run_experiment(
        cfg, reporter=reporter, parent_run_id=ctx.parent_run_id, overrides=list(overrides), tags=tags
    )
    outcome.run_id = result.run_id
    if result.run_id:
        trial.set_user_attr("mlflow_run_id", result.run_id)
    outcome.value = _metric_value(result, ctx.spec.metric)
    outcome.state = "COMPLETE"


def _record(
    study: Any, trial: Any, ctx: TrialContext, outcome: TrialOutcome, sync: Callable[[Any], None] | None, retry: bool
) -> None:
    """Tell Optuna the outcome (keeping a state another process set first), queue a ``retry``, sync MLflow."""
    from optuna.trial import TrialState

    from paraling.search.recovery import retry_trial

    if outcome.reason and outcome.state == "FAIL":
        trial.set_user_attr("fail_reason", mask_secrets(outcome.reason)[:2000])
    state = {"COMPLETE": TrialState.COMPLETE, "PRUNED": TrialState.PRUNED}.get(outcome.state, TrialState.FAIL)
    frozen = study.tell(
        trial, outcome.value if state == TrialState.COMPLETE else None, state=state, skip_if_finished=True
    )
    if frozen.state != state:
        log.warning(
            "%strial %d was already %s (its worker was presumed dead); keeping that state",
            _prefix(ctx),
            trial.number,
            frozen.state.name,
        )
        outcome.state = frozen.state.name
    if retry:
        retry_trial(study, frozen, max_retry=None)
    if sync is not None:
        try:
            sync(frozen)
        except Exception as exc:  # MLflow hiccups must not lose the Optuna record
            log.warning("%strial %d: could not update its MLflow run: %s", _prefix(ctx), trial.number, exc)


def _prefix(ctx: TrialContext) -> str:
    return f"[{ctx.label}] " if ctx.label else ""


def _free_memory() -> None:
    import gc

    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:  # pragma: no cover - best effort after an OOM
        pass
