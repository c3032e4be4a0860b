"""The ``paraling_optuna`` Hydra Sweeper: ask/tell over paraling's study files, pruning inside launcher jobs."""

from __future__ import annotations

from typing import Any

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

from hydra_plugins.paraling_optuna_sweeper.config import ParalingOptunaSweeperConf

__all__ = ["ParalingOptunaSweeper", "ParalingOptunaSweeperConf"]


class ParalingOptunaSweeper(Sweeper):
    """Runs a ``sweeps/NAME.yaml`` study through the configured Hydra launcher.

    Args:
        study: Study file or name (default: the ``sweep`` config key, set by ``+sweep=NAME``).
        storage: Optuna storage (default: the study's).
        study_name: Optuna study name (default: the study's).
        n_trials: Trials the study should hold (default: the study's).
        n_jobs: Trials per launcher batch.
        timeout: Seconds after which no new batch starts.
        gpus: GPUs the jobs of a batch are spread over (``"0,1"``; default: all visible; ``"none"``).
    """

    def __init__(
        self,
        study: str | None = None,
        storage: str | None = None,
        study_name: str | None = None,
        n_trials: int | None = None,
        n_jobs: int = 1,
        timeout: float | None = None,
        gpus: str | None = None,
    ) -> None:
        self.study, self.storage, self.study_name = study, storage, study_name
        self.n_trials, self.n_jobs, self.timeout, self.gpus = n_trials, n_jobs, timeout, gpus
        self.hydra_context: HydraContext | None = None
        self.config: DictConfig | None = None
        self.launcher = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        """Keep the context; the launcher is created in :meth:`sweep` with the trial-running task function."""
        self.hydra_context, self.config = hydra_context, config

    def sweep(self, arguments: list[str]) -> Any:
        """Run or resume the study (see :func:`paraling.search.hydra_sweeper.hydra_sweep`).

        A :class:`~paraling.errors.ParalingError` (a bad study file, GPUs that cannot be served, ...) ends the command
        with its one line, as in ``paraling sweep``, not with Hydra's traceback.
        """
        import sys

        from paraling.errors import ParalingError
        from paraling.search.hydra_sweeper import hydra_sweep
        from paraling.secrets import mask_secrets

        try:
            return hydra_sweep(self, arguments)
        except ParalingError as exc:
            print(mask_secrets(f"paraling: error: {exc}"), file=sys.stderr)
            raise SystemExit(exc.exit_code) from None
