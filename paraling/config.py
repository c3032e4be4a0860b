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

__all__ = [
    "CONF_DIR",
    "SWEEPS_DIR",
    "AggregationConfig",
    "AugmentConfig",
    "BaselineConfig",
    "CVConfig",
    "CorpusConfig",
    "FeaturesConfig",
    "ModelConfig",
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
class CorpusConfig:
    """Where the utterances come from.

    ``kind`` selects the recipe: ``csv`` (columns file,label,speaker; ``path`` is the CSV), ``folders`` (one
    sub-folder per class under ``path``), ``manifest`` (a paraling JSONL manifest), ``demo`` (the embedded
    synthetic corpus, generated into ``path`` when missing) or ``speech`` (real recorded prompts under
    ``speech_root`` with the demo's eating noise, built into ``path`` when missing; ``demo_seed`` and
    ``demo_snr_db`` apply to it too).
    """

    name: str = "demo"
    kind: str = "demo"
    path: str | None = None
    file_column: str = "file"
    label_column: str = "label"
    speaker_column: str = "speaker"
    split_column: str | None = None
    speaker_regex: str | None = None
    extensions: list[str] = field(default_factory=lambda: [".wav", ".flac", ".ogg"])
    allow_outside_root: bool = False
    on_bad_file: str = "skip"
    demo_speakers: int = 30
    demo_seed: int = 0
    demo_snr_db: list[float] | None = None
    speech_root: str = "/usr/share/asterisk/sounds"
    speech_utts_per_class: int = 6
    positive_labels: list[str] | None = None
    negative_class: str | None = None  # the "no" side of the 2-class UAR (demo: No_Food); None = no 2-class UAR


@dataclass
class FeaturesConfig:
    """Log-mel filterbank extraction (25 ms / 10 ms, 40 bands by default)."""

    kind: str = "fbank"
    sample_rate: int = 16000
    n_mels: int = 40
    frame_length_ms: float = 25.0
    frame_shift_ms: float = 10.0
    f_min: float = 20.0
    f_max: float | None = None
    normalize: str = "global"
    cache: bool = True


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
class AugmentConfig:
    """Training-only augmentation (pitch shift with Rubberband)."""

    name: str = "none"
    semitones: list[float] = field(default_factory=list)
    crispness: int = 6


@dataclass
class BaselineConfig:
    """Utterance-level models selected by ``model.name`` (``svm``, ``rf``, ``dnn``, ``lr``); see
    paraling.pipeline.baselines.

    ``features``: ``compare`` (openSMILE ComParE_2016 functionals), ``logmel`` (mean/std of the log-mel bands) or
    ``embeddings`` (per-utterance CNN embeddings of the fold's model in run ``embedding_run``).
    """

    features: str = "compare"
    svm_c: list[float] = field(default_factory=lambda: [0.0001, 0.001, 0.01, 0.1, 1.0])
    lr_c: list[float] = field(default_factory=lambda: [0.001, 0.01, 0.1, 1.0, 10.0])
    inner_folds: int = 3
    rf_trees: int = 500
    dnn_hidden: list[int] = field(default_factory=lambda: [256, 256, 256])
    dnn_dropout: float = 0.5
    dnn_epochs: int = 60
    dnn_lr: float = 0.001
    dnn_batch_size: int = 64
    embedding_run: str | None = None
    embedding_level: str = "utterance"


@dataclass
class ModelConfig:
    """The windowed CNN: ``n_blocks`` conv+pool blocks then fully-connected layers (or a baseline, see ``name``)."""

    name: str = "cnn"
    n_blocks: int = 3
    channels: list[int] = field(default_factory=lambda: [32, 64, 128, 128, 128])
    kernel_sizes: list[int] = field(default_factory=lambda: [3, 2, 2, 2, 2])
    pool_size: int = 2
    dropout_conv: list[float] = field(default_factory=lambda: [0.1, 0.2, 0.3, 0.3, 0.3])
    fc_sizes: list[int] = field(default_factory=lambda: [500, 500])
    dropout_fc: float = 0.5
    baseline: BaselineConfig = field(default_factory=BaselineConfig)


@dataclass
class SpecAugmentConfig:
    """SpecAugment-style masking of training windows: each mask zeroes up to ``*_width`` bands or frames."""

    freq_masks: int = 0
    freq_width: int = 8
    time_masks: int = 0
    time_width: int = 2


@dataclass
class TrainerConfig:
    """SGD with Nesterov momentum and linear learning-rate / momentum schedules."""

    epochs: int = 15
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
class AggregationConfig:
    """How window posteriors become an utterance decision: majority, mean, logmean, weighted (Ridge, the paper's)
    or weighted_soft (the Ridge weights on whole posteriors; the default)."""

    method: str = "weighted_soft"
    ridge_alpha: float = 1.0
    use_energy: bool = True


@dataclass
class TransferConfig:
    """Copy named layers from a source model (MLflow run id, ``models:/name@alias`` or ``pretrain``)."""

    source: str | None = None
    layers: Any = field(default_factory=list)  # list of names, or "all"
    source_fold: int | None = None
    freeze_epochs: int = 0
    lr_start: float | None = None
    pretrain_overrides: list[str] = field(default_factory=list)


@dataclass
class CVConfig:
    """Speaker-independent cross-validation: ``kfold`` (grouped by speaker), ``loso`` or ``split``."""

    scheme: str = "kfold"
    folds: int = 5
    stratify: bool = True


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

    corpus: CorpusConfig = field(default_factory=CorpusConfig)
    features: FeaturesConfig = field(default_factory=FeaturesConfig)
    windows: WindowsConfig = field(default_factory=WindowsConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    aggregation: AggregationConfig = field(default_factory=AggregationConfig)
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


_GROUPS: dict[str, type] = {
    "corpus": CorpusConfig,
    "features": FeaturesConfig,
    "windows": WindowsConfig,
    "augment": AugmentConfig,
    "model": ModelConfig,
    "trainer": TrainerConfig,
    "aggregation": AggregationConfig,
    "transfer": TransferConfig,
    "cv": CVConfig,
    "tracking": TrackingConfig,
}


def register_configs() -> None:
    """Register the root schema (``paraling_schema``) and one schema per group (``<group>/schema``)."""
    cs = ConfigStore.instance()
    cs.store(name="paraling_schema", node=ParalingConfig)
    for group, node in _GROUPS.items():
        cs.store(group=group, name="schema", node=node)


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

    with hydra_context():
        return hydra_compose("config", overrides=list(overrides))
