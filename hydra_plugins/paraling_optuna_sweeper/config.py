"""Structured config of the ``paraling_optuna`` sweeper, registered as ``hydra/sweeper=paraling_optuna``.

No ``from __future__ import annotations`` here: Hydra's plugin scan executes this module outside ``sys.modules``,
where dataclasses cannot resolve string annotations.
"""

from dataclasses import dataclass
from typing import Optional

from hydra.core.config_store import ConfigStore


@dataclass
class ParalingOptunaSweeperConf:
    """Settings of the sweeper (``hydra.sweeper.<key>=...`` on the command line).

    Attributes:
        study: Study file or name; default: the ``sweep`` key (``+sweep=NAME`` → ``sweeps/NAME.yaml``).
        storage: Optuna storage URL or journal path (default: the study file's, else ``sweeps/<study>/journal.log``).
        study_name: Optuna study name (default: the file's ``study_name``).
        n_trials: Trials the study should hold (default: the file's).
        n_jobs: Trials handed to the launcher per batch (parallel launchers such as joblib run them together).
        timeout: Seconds after which no new batch starts.
        gpus: GPUs the jobs of a batch are spread over, e.g. ``"0,1"`` (default: all visible; ``"none"``): job ``j``
            of a batch runs with ``CUDA_VISIBLE_DEVICES`` set to GPU ``j mod len(gpus)``.
    """

    _target_: str = "hydra_plugins.paraling_optuna_sweeper.paraling_optuna_sweeper.ParalingOptunaSweeper"
    study: Optional[str] = None  # noqa: UP045 - OmegaConf structured configs need typing.Optional on py3.10
    storage: Optional[str] = None  # noqa: UP045
    study_name: Optional[str] = None  # noqa: UP045
    n_trials: Optional[int] = None  # noqa: UP045
    n_jobs: int = 1
    timeout: Optional[float] = None  # noqa: UP045
    gpus: Optional[str] = None  # noqa: UP045


ConfigStore.instance().store(
    group="hydra/sweeper", name="paraling_optuna", node=ParalingOptunaSweeperConf, provider="paraling"
)
