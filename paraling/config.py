"""Typed configuration schemas, registered in Hydra's ConfigStore.

The YAML files under ``conf/`` are validated against these dataclasses when Hydra composes them, so an unknown
key or a value of the wrong type fails at composition with Hydra's message naming the key. Value checks that a
type cannot express (ranges, choices, cross-field rules) live in :func:`paraling.config_checks.validate`, called
by every entry point.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig

from paraling.config_groups import BUILTIN_SCHEMAS, AggregationConfig, AugmentConfig
from paraling.plugins import load_plugins, store_schemas

__all__ = [
    "CONF_DIR",
    "SWEEPS_DIR",
    "CVConfig",
    "ParalingConfig",
    "SpecAugmentConfig",
    "TrackingConfig",
    "TrainerConfig",
    "TransferConfig",
    "WindowsConfig",
    "compose",
    "hydra_context",
    "register_configs",
]


def _data_dir(name: str) -> Path:
    """``conf`` or ``sweeps``: inside the installed package (a wheel carries them there, setup.py) or, in a source
    checkout and an editable install, at the repository root beside ``paraling/``."""
    here = Path(__file__).resolve().parent
    return here / name if (here / name).is_dir() else here.parent / name


#: The Hydra configuration (``conf/``); users add their own folders with ``--config-dir`` / ``hydra.searchpath``.
CONF_DIR = _data_dir("conf")
#: The shipped study files (``sweeps/``): ``paraling sweep demo`` finds ``demo.yaml`` here.
SWEEPS_DIR = _data_dir("sweeps")


@dataclass
class WindowsConfig:
    """Local windows cut from an utterance's feature matrix.

    ``short_policy`` decides what happens to utterances with fewer frames than ``width``: ``pad`` repeats the edge
    frames (the utterance yields one window), ``skip`` drops it with a logged count, ``error`` stops with a message.
    """

    width: int = 11
    shift: int = 2
    short_policy: str = "pad"


@dataclass
class SpecAugmentConfig:
    """SpecAugment-style masking of training windows: each mask zeroes up to ``*_width`` bands or frames."""

    freq_masks: int = 0
    freq_width: int = 8
    time_masks: int = 0
    time_width: int = 2


@dataclass
class TrainerConfig:
    """SGD with Nesterov momentum (or AdamW) and linear learning-rate / momentum schedules."""

    epochs: int = 15
    optimizer: str = "sgd"
    batch_size: int = 256
    lr_start: float = 0.02
    lr_end: float = 0.0001
    momentum_start: float = 0.9
    momentum_end: float = 0.999
    nesterov: bool = True
    weight_decay: float = 0.0
    val_speaker_fraction: float = 0.15
    select: str = "best"
    patience: int = 0
    precision: str = "auto"
    channels_last: bool = True
    native: bool = True
    threads: int = 0
    max_windows_per_epoch: int | None = None
    eval_batch_size: int = 2048
    eval_batch_size_gpu: int = 32768
    checkpoint: bool = True
    capture: str = "auto"
    deterministic: bool = True
    spec_augment: SpecAugmentConfig = field(default_factory=SpecAugmentConfig)
    mixup: float = 0.0


@dataclass
class TransferConfig:
    """Copy named layers from a source model (MLflow run id, ``models:/name@alias`` or ``pretrain``), or with
    ``source: encoder`` fine-tune the top ``layers`` of the ``features=ssl`` encoder."""

    source: str | None = None
    layers: Any = field(default_factory=list)  # list of names, or "all"
    source_fold: int | None = None
    freeze_epochs: int = 0
    lr_start: float | None = None
    lr_scale: float = 1.0  # the transferred layers' learning rate relative to the rest (discriminative rates)
    pretrain_overrides: list[str] = field(default_factory=list)


@dataclass
class CVConfig:
    """Speaker-independent cross-validation: ``kfold`` (grouped), ``loso`` (leave one group out) or ``split`` (score
    the utterances of ``test_split``); the groups are speakers or the manifest column ``group_by``."""

    scheme: str = "kfold"
    folds: int = 5
    stratify: bool = True
    group_by: str = "speaker"
    test_split: str = "test"


@dataclass
class TrackingConfig:
    """MLflow tracking; ``uri`` null means ``$MLFLOW_TRACKING_URI`` or ``sqlite:///mlruns/mlflow.db``."""

    enabled: bool = True
    uri: str | None = None
    experiment: str = "paraling"
    run_name: str | None = None
    log_model: bool = True
    tags: dict[str, str] = field(default_factory=dict)
    system_metrics: bool = True
    system_metrics_interval: float = 10.0


@dataclass
class ParalingConfig:
    """The root of a composed paraling configuration."""

    # The plug-in groups: each node is typed by its kind's dataclass (paraling.config_groups, or a plug-in's), so the
    # root leaves them open; paraling.config_checks.validate types them.
    corpus: Any = None
    features: Any = None
    windows: WindowsConfig = field(default_factory=WindowsConfig)
    augment: Any = None
    model: Any = None
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    aggregation: Any = None
    transfer: TransferConfig = field(default_factory=TransferConfig)
    cv: CVConfig = field(default_factory=CVConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    name: str = "default"
    seed: int = 0
    device: str = "auto"
    cache_dir: str = ".cache/paraling"
    progress: str = "auto"
    extra: dict[str, Any] = field(default_factory=dict)
    sweep: Any = None
    plugins: list[str] = field(default_factory=list)  # modules that register corpora, extractors, models


_GROUPS: dict[str, type] = {
    "windows": WindowsConfig,
    "augment": AugmentConfig,
    "trainer": TrainerConfig,
    "aggregation": AggregationConfig,
    "transfer": TransferConfig,
    "cv": CVConfig,
    "tracking": TrackingConfig,
}


def register_configs() -> None:
    """Register the root schema (``paraling_schema``), one schema per fixed group (``<group>/schema``) and per
    built-in kind of the plug-in groups (``<group>/<kind>_schema``), after importing the plug-in modules named by
    ``$PARALING_PLUGINS`` and by installed packages (:func:`paraling.plugins.load_plugins`), which add theirs."""
    cs = ConfigStore.instance()
    cs.store(name="paraling_schema", node=ParalingConfig)
    for group, node in _GROUPS.items():
        cs.store(group=group, name="schema", node=node)
    for group, kind, node in BUILTIN_SCHEMAS:
        cs.store(group=group, name=f"{kind}_schema", node=node)
    load_plugins()
    store_schemas()


@contextlib.contextmanager
def hydra_context() -> Iterator[None]:
    """Hydra's compose API on the packaged ``conf/`` (a no-op when Hydra is already initialised, e.g. in a job)."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    register_configs()
    if GlobalHydra.instance().is_initialized():
        yield
        return
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        yield


def compose(overrides: Sequence[str] = ()) -> DictConfig:
    """The configuration ``paraling train OVERRIDES`` would run, composed from the packaged ``conf/``.

    The one compose helper: the CLI's sweeps, pre-training, the bench and the tests all compose through it.
    """
    from hydra import compose as hydra_compose

    from paraling.config_compat import rewrite_overrides

    with hydra_context():
        return hydra_compose("config", overrides=rewrite_overrides(overrides))
