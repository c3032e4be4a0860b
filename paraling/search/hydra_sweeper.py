"""The engine of the ``hydra/sweeper=paraling_optuna`` Hydra Sweeper plugin (ask/tell through Hydra's launcher).

``paraling train -m hydra/sweeper=paraling_optuna +sweep=demo [OVERRIDES]`` runs the study of ``sweeps/demo.yaml``
with the same space, sampler, pruner, storage and MLflow parent/child runs as ``paraling sweep``. The sweeper asks
Optuna for ``n_jobs`` trials, hands their overrides to the configured launcher (basic, joblib, submitit...) and keeps
their heartbeats while the batch runs. Each launcher job learns its trial number from the environment variable
``PARALING_SWEEP_TRIAL`` (set through ``hydra.job.env_set``, so it stays out of the job's ``paraling train`` line),
loads the trial from the storage, reports ``val_uar`` per epoch and is pruned in the job itself.

Hydra sweep syntax in the overrides adds parameters: ``a=1,2``/``choice(...)`` (categorical), ``range(lo,hi,step)``
(int or stepped float, ``hi`` exclusive as in Hydra), ``interval(lo,hi)`` and ``tag(log,interval(lo,hi))`` (float).
"""

from __future__ import annotations

import copy
import logging
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from paraling.config_compat import rewrite_overrides
from paraling.errors import ConfigError, SearchError
from paraling.search.hydra_batches import TRIAL_ENV, BatchLoop
from paraling.search.space import SearchSpace
from paraling.search.trial import TrialContext, TrialOutcome, execute_trial

__all__ = ["TRIAL_ENV", "TrialTask", "hydra_sweep"]

log = logging.getLogger("paraling.search")


class TrialTask:
    """The launcher's task function: run the trial named by ``$PARALING_SWEEP_TRIAL`` (picklable).

    Args:
        ctx: The trial context (storage, study, parent run).
    """

    def __init__(self, ctx: TrialContext) -> None:
        self.ctx = ctx

    def __call__(self, cfg: Any) -> TrialOutcome:
        """Run one trial on the launcher-composed ``cfg``; returns its outcome (never raises for a failed trial)."""
        import optuna
        from hydra.core.hydra_config import HydraConfig
        from omegaconf import OmegaConf

        from paraling.search.mlflow_parent import SweepTracking
        from paraling.search.recovery import trial_id
        from paraling.search.samplers import make_pruner
        from paraling.search.storage import create_or_load_study, study_storage

        ctx, spec = self.ctx, self.ctx.spec
        number = int(os.environ[TRIAL_ENV])
        try:
            overrides = [str(o) for o in HydraConfig.get().overrides.task]
        except ValueError:
            overrides = []
        study = create_or_load_study(
            ctx.storage_url, spec, optuna.samplers.RandomSampler(), make_pruner(spec.pruner), create=False
        )
        frozen = next((t for t in study.get_trials(deepcopy=False) if t.number == number), None)
        if frozen is None:
            raise SearchError(f"trial {number} of study {spec.study_name} not found in the storage")
        storage = study_storage(ctx.storage_url, spec.storage)
        trial = optuna.trial.Trial(study, trial_id(storage, study, number))
        sync = None
        if ctx.parent_run_id and ctx.tracking_uri:
            sync = SweepTracking(ctx.tracking_uri, ctx.experiment, spec.study_name).child_sync(ctx.parent_run_id)

        def make_cfg(_: list[str]) -> Any:
            c = copy.deepcopy(cfg)
            OmegaConf.set_readonly(c, False)
            return c

        return execute_trial(study, trial, ctx, overrides, make_cfg, sync)


def _sweep_params(overrides: list[Any]) -> dict[str, Any]:
    """Hydra sweep overrides → study-file parameter mappings."""
    from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep

    out: dict[str, Any] = {}
    for ov in overrides:
        key = ov.key_or_group
        v = ov.value()
        if isinstance(v, ChoiceSweep):
            out[key] = {"type": "categorical", "choices": list(ov.sweep_iterator())}
        elif isinstance(v, RangeSweep):
            ints = not any(isinstance(x, float) for x in (v.start, v.stop, v.step))
            values = list(ov.sweep_iterator())
            if not values:
                raise ConfigError(f"{ov.input_line}: empty range")
            out[key] = {"type": "int" if ints else "float", "low": values[0], "high": values[-1], "step": v.step}
        elif isinstance(v, IntervalSweep):
            kind = "int" if isinstance(v.start, int) and isinstance(v.end, int) else "float"
            out[key] = {"type": kind, "low": v.start, "high": v.end, "log": "log" in (v.tags or set())}
        else:
            raise ConfigError(f"{ov.input_line}: unsupported sweep override for the paraling_optuna sweeper")
    return out


def _job_gpus(requested: list[str] | None, launcher: str) -> list[str]:
    """The GPUs the jobs of a batch are confined to (``CUDA_VISIBLE_DEVICES`` per job), or ``[]`` for none.

    Only a launcher that starts a fresh local process per job (``submitit_local``) gets one: SLURM binds GPUs to its
    jobs itself (``hydra.launcher.gpus_per_node``), the basic launcher runs jobs in this process and joblib reuses its
    workers, where CUDA has already started and would ignore the variable.

    Raises:
        ConfigError: ``hydra.sweeper.gpus`` names GPUs for a launcher that cannot be confined that way.
        DeviceError: It names GPUs that are not visible here.
    """
    from paraling.search.gpus import check_gpus, launcher_pins_gpus, visible_gpus

    if not launcher_pins_gpus(launcher):
        if requested:
            raise ConfigError(
                f"hydra.sweeper.gpus={','.join(requested)}: the launcher {launcher or 'basic'} cannot confine a job "
                "to a GPU (its jobs run in processes where CUDA may already have started, or SLURM binds them); use "
                "hydra/launcher=submitit_local, `paraling sweep --gpus`, or SLURM's hydra.launcher.gpus_per_node"
            )
        return []
    return visible_gpus() if requested is None else check_gpus(requested, visible_gpus())


def hydra_sweep(sweeper: Any, arguments: list[str]) -> list[Any]:
    """Run the study through ``sweeper.launcher``; called by the plugin's ``sweep``.

    Args:
        sweeper: The plugin instance (``study``, ``storage``, ``study_name``, ``n_trials``, ``n_jobs``, ``timeout``,
            ``hydra_context``, ``config``).
        arguments: The command line's task overrides.

    Returns:
        The launcher's job returns, batch by batch.
    """
    from hydra.core.plugins import Plugins
    from omegaconf import OmegaConf

    from paraling.search.gpus import parse_gpus
    from paraling.search.probe import check_against_config
    from paraling.search.recovery import Heartbeat
    from paraling.search.runner import close_after_error, finish, prepare_study, resolve_storage_url
    from paraling.search.storage import study_storage

    config = sweeper.config
    spec, fixed = _study_spec(sweeper, arguments)
    url = resolve_storage_url(spec)
    loader = sweeper.hydra_context.config_loader

    def load(overrides: list[str]) -> Any:
        return loader.load_sweep_config(master_config=config, sweep_overrides=list(overrides))

    launcher_target = str(OmegaConf.select(config, "hydra.launcher._target_") or "")
    gpus = _job_gpus(parse_gpus(sweeper.gpus), launcher_target)
    base_cfg = check_against_config(spec, fixed, load)
    base = list(spec.overrides) + fixed
    hydra_ov = [str(o) for o in OmegaConf.select(config, "hydra.overrides.hydra", default=[]) or []]
    prepared = prepare_study(spec, url, base, base_cfg, " ".join(["paraling train -m", *hydra_ov, *arguments]))
    storage = study_storage(url, spec.storage)
    _seed_sampler(prepared, url, storage)
    loop = BatchLoop(
        prepared=prepared,
        url=url,
        storage=storage,
        launcher=Plugins.instance().instantiate_launcher(
            hydra_context=sweeper.hydra_context, task_function=TrialTask(prepared.ctx), config=config
        ),
        base=base,
        load=load,
        n_jobs=max(1, int(sweeper.n_jobs)),
        gpus=gpus,
        sweep_dir=Path(str(OmegaConf.select(config, "hydra.sweep.dir") or "multirun")),
        pickles="submitit" in launcher_target,
        sync=prepared.tracking.child_sync(prepared.ctx.parent_run_id) if prepared.tracking else None,
    )
    heartbeat = Heartbeat(storage, spec.storage.heartbeat_interval)
    try:
        stopped = loop.run(heartbeat, time.time() + spec.timeout if spec.timeout else None)
    except KeyboardInterrupt:
        stopped = "interrupted"
    except Exception as exc:  # the launcher or a service failed: the batch is recorded; close the parent, re-raise
        close_after_error(prepared, exc)
        raise
    finally:
        heartbeat.close()
    summary = finish(prepared, stopped)
    print(summary.format(), flush=True)
    _write_results(config, summary)
    if summary.stopped == "interrupted":
        raise SystemExit(130)
    if not summary.ok:
        raise SearchError(summary.error_line())
    return loop.results


def _study_spec(sweeper: Any, arguments: list[str]) -> tuple[Any, list[str]]:
    """The study file the sweeper names, with the command line's sweep parameters and sweeper options; and the
    command line's fixed overrides (old key names rewritten).

    Raises:
        ConfigError: No study file named, or a command-line sweep over a key the study already searches.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    from paraling.search.spec import load_study_spec

    ref = sweeper.study or OmegaConf.select(sweeper.config, "sweep", default=None)
    if not ref:
        raise ConfigError(
            "hydra/sweeper=paraling_optuna needs a study file: add +sweep=NAME (sweeps/NAME.yaml) or "
            "hydra.sweeper.study=PATH"
        )
    spec = load_study_spec(str(ref))
    parsed = OverridesParser.create().parse_overrides(list(arguments))
    fixed = rewrite_overrides(
        str(o.input_line) for o in parsed if not o.is_sweep_override() and o.key_or_group != "sweep"
    )
    swept = [o for o in parsed if o.is_sweep_override()]
    if swept:
        extra = SearchSpace.from_mapping(_sweep_params(swept), "command-line sweep")
        clash = set(extra.names) & set(spec.space.names)
        if clash:
            raise ConfigError(f"command-line sweep over {sorted(clash)} clashes with the study's space")
        spec = replace(spec, space=SearchSpace(spec.space.params + extra.params))
    return spec.with_options(sweeper.n_trials, sweeper.study_name, sweeper.storage, sweeper.timeout), fixed


def _seed_sampler(prepared: Any, url: str, storage: Any) -> None:
    """Give this process's sampler its own seed (a slot claimed in the storage, as each sweep worker does)."""
    from paraling.search.locks import study_lock
    from paraling.search.samplers import make_sampler
    from paraling.search.worker import claim_sampler_slot, worker_seed

    spec, study = prepared.spec, prepared.study
    with study_lock(url, spec.study_name, spec.storage.outage_timeout):
        slot, n_before = claim_sampler_slot(storage, study)
    study.sampler = make_sampler(spec.sampler, spec.space, worker_seed(spec.sampler.seed, slot, n_before))


def _write_results(config: Any, summary: Any) -> None:
    """``optimization_results.yaml`` in the multirun folder (best params and value, counts)."""
    from omegaconf import OmegaConf

    folder = OmegaConf.select(config, "hydra.sweep.dir", default=None)
    if not folder:
        return
    out = {
        "study": summary.study_name,
        "storage": summary.storage,
        "metric": summary.metric,
        "best_trial": summary.best_number,
        "best_value": summary.best_value,
        "best_params": summary.best_params,
        "reproduce": summary.best_reproduce,
        "complete": summary.complete,
        "pruned": summary.pruned,
        "failed": summary.failed,
        "mlflow_parent_run": summary.parent_run_id,
    }
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
        OmegaConf.save(OmegaConf.create(out), Path(folder) / "optimization_results.yaml")
    except (OSError, ValueError) as exc:
        log.warning("could not write optimization_results.yaml: %s", exc)
