"""Typed config nodes of the plug-in groups: one dataclass per registered kind, holding only that kind's keys.

The selector of every group is ``kind`` (``corpus.kind``, ``features.kind``, ``model.kind``, ``aggregation.kind``,
``augment.kind``). Each built-in kind's schema is stored in Hydra's ConfigStore as ``<group>/<kind>_schema``
(:func:`paraling.config.register_configs`), and the group's YAML file in ``conf/`` starts from it, so overrides of any
of its keys type-check at composition. A plug-in's dataclass (subclass the group's base here) is registered with its
registry (:mod:`paraling.plugins`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "BUILTIN_SCHEMAS",
    "AggregationConfig",
    "AugmentConfig",
    "BaselineConfig",
    "CNNConfig",
    "CompareCorpusConfig",
    "CorpusConfig",
    "CremadCorpusConfig",
    "CsvCorpusConfig",
    "DemoCorpusConfig",
    "DnnBaselineConfig",
    "DnnConfig",
    "EmoDbCorpusConfig",
    "FeaturesConfig",
    "FoldersCorpusConfig",
    "IemocapCorpusConfig",
    "LogMelConfig",
    "LrBaselineConfig",
    "LrConfig",
    "ManifestCorpusConfig",
    "ModelConfig",
    "RavdessCorpusConfig",
    "RfBaselineConfig",
    "RfConfig",
    "SpeechCorpusConfig",
    "SslConfig",
    "SslHeadConfig",
    "StandardCorpusConfig",
    "SvmBaselineConfig",
    "SvmConfig",
]


# --- corpus -----------------------------------------------------------------------------------------------------


@dataclass
class CorpusConfig:
    """What every corpus recipe has: its display ``name``, ``kind`` (the recipe), ``path``, the bad-file policy,
    path confinement and the "no" side of the 2-class UAR (``negative_class``; ``None``: no 2-class UAR)."""

    name: str = "corpus"
    kind: str = "csv"
    path: str | None = None
    on_bad_file: str = "skip"
    allow_outside_root: bool = False
    negative_class: str | None = None


@dataclass
class CsvCorpusConfig(CorpusConfig):
    """A CSV with a file, label and speaker column (paths relative to the CSV; extra columns kept)."""

    kind: str = "csv"
    file_column: str = "file"
    label_column: str = "label"
    speaker_column: str = "speaker"
    split_column: str | None = None


@dataclass
class FoldersCorpusConfig(CorpusConfig):
    """One sub-folder per class under ``path``; the speaker from the file name (``speaker_regex``)."""

    kind: str = "folders"
    speaker_regex: str | None = None
    extensions: list[str] = field(default_factory=lambda: [".wav", ".flac", ".ogg"])


@dataclass
class ManifestCorpusConfig(CorpusConfig):
    """A paraling JSONL manifest."""

    kind: str = "manifest"


@dataclass
class DemoCorpusConfig(CorpusConfig):
    """The embedded synthetic eating-condition corpus, generated into ``path`` when missing."""

    kind: str = "demo"
    path: str | None = "data/demo"
    demo_speakers: int = 30
    demo_seed: int = 0
    demo_snr_db: list[float] | None = None


@dataclass
class SpeechCorpusConfig(CorpusConfig):
    """Real recorded prompts under ``speech_root`` with the demo's eating noise, built into ``path`` when missing."""

    kind: str = "speech"
    path: str | None = "data/speech"
    speech_root: str = "/usr/share/asterisk/sounds"
    speech_utts_per_class: int = 6
    demo_seed: int = 0
    demo_snr_db: list[float] | None = None


@dataclass
class StandardCorpusConfig(CorpusConfig):
    """A standard corpus as distributed, at ``path`` (its unpacked root); its manifest is prepared once into
    ``manifest_dir`` (default ``data/<kind>``) and reused while the corpus's files are unchanged."""

    manifest_dir: str | None = None


@dataclass
class EmoDbCorpusConfig(StandardCorpusConfig):
    """Berlin EmoDB (``wav/03a01Fa.wav``): 7 emotions, 10 speakers; leave-one-speaker-out."""

    name: str = "emodb"
    kind: str = "emodb"


@dataclass
class RavdessCorpusConfig(StandardCorpusConfig):
    """RAVDESS (``Actor_NN/03-01-EE-II-SS-RR-AA.wav``): 8 emotions, 24 actors; ``vocal_channel`` speech, song or
    both."""

    name: str = "ravdess"
    kind: str = "ravdess"
    vocal_channel: str = "speech"


@dataclass
class CremadCorpusConfig(StandardCorpusConfig):
    """CREMA-D (``AudioWAV/1001_DFA_ANG_XX.wav``): 6 emotions, 91 actors."""

    name: str = "cremad"
    kind: str = "cremad"


@dataclass
class IemocapCorpusConfig(StandardCorpusConfig):
    """IEMOCAP (``SessionN/sentences/wav``, labels in ``SessionN/dialog/EmoEvaluation``); ``label_map``: raw label ->
    class (``None``: the 4-class set, excited merged into happy); others are left out."""

    name: str = "iemocap"
    kind: str = "iemocap"
    label_map: dict[str, str] | None = None


@dataclass
class CompareCorpusConfig(StandardCorpusConfig):
    """A ComParE task (``wav/{train,devel,test}_*.wav``, ``lab/*.tsv|csv``); ``label_column``/``speaker_column``:
    the label file's columns (default: ``label`` or the second column; no speakers)."""

    name: str = "compare"
    kind: str = "compare"
    label_column: str | None = None
    speaker_column: str | None = None


# --- features ---------------------------------------------------------------------------------------------------


@dataclass
class FeaturesConfig:
    """What every feature extractor has: ``kind``, the normalisation of its frames and whether they are cached."""

    kind: str = "fbank"
    normalize: str = "global"
    cache: bool = True


@dataclass
class LogMelConfig(FeaturesConfig):
    """Log-mel filterbank (``fbank``: Kaldi-compatible; ``melspec``: torchaudio's MelSpectrogram)."""

    sample_rate: int = 16000
    n_mels: int = 40
    frame_length_ms: float = 25.0
    frame_shift_ms: float = 10.0
    f_min: float = 20.0
    f_max: float | None = None


@dataclass
class SslConfig(FeaturesConfig):
    """A pre-trained speech encoder's hidden states (:mod:`paraling.features.ssl`): ``backend`` transformers (a hub
    id or a local folder in ``model``, pinned by ``revision``) or resemblyzer (the GE2E weights in its wheel);
    ``layers``: ``all``, an index or a list; long recordings encoded ``chunk_seconds`` at a time with
    ``context_seconds`` either side; ``encoder_id``: set by a trained model (its encoder must match)."""

    kind: str = "ssl"
    backend: str = "transformers"
    model: str = ""
    revision: str | None = None
    layers: Any = "all"
    chunk_seconds: float = 20.0
    context_seconds: float = 1.0
    device: str = "auto"
    precision: str = "auto"
    sample_rate: int = 16000
    encoder_id: str | None = None


# --- models -----------------------------------------------------------------------------------------------------


@dataclass
class ModelConfig:
    """What every model has: its ``kind`` (``name``: its old name, read as ``kind`` with a deprecation line)."""

    kind: str = "cnn"
    name: str | None = None


@dataclass
class CNNConfig(ModelConfig):
    """The windowed CNN: ``n_blocks`` conv+pool blocks (the first ``n_blocks`` entries of the lists), then FC layers."""

    kind: str = "cnn"
    n_blocks: int = 3
    channels: list[int] = field(default_factory=lambda: [32, 64, 128, 128, 128])
    kernel_sizes: list[int] = field(default_factory=lambda: [3, 2, 2, 2, 2])
    pool_size: int = 2
    dropout_conv: list[float] = field(default_factory=lambda: [0.1, 0.2, 0.3, 0.3, 0.3])
    fc_sizes: list[int] = field(default_factory=lambda: [500, 500])
    dropout_fc: float = 0.5


@dataclass
class SslHeadConfig(ModelConfig):
    """A light head over ``features=ssl`` frames (:mod:`paraling.models.ssl_head`): a softmax-weighted sum of the
    hidden states, a projection to ``proj_dim``, ``mean`` or ``attentive`` pooling over the window, an MLP.
    ``finetune_layers``/``encoder_lr_scale`` are set from ``transfer=encoder`` (the top layers trained too)."""

    kind: str = "ssl_head"
    pooling: str = "attentive"
    proj_dim: int = 256
    fc_sizes: list[int] = field(default_factory=lambda: [256])
    dropout: float = 0.2
    layer_norm: bool = True
    finetune_layers: int = 0
    encoder_lr_scale: float = 1.0


@dataclass
class BaselineConfig:
    """What every utterance-level model reads: its features (``compare``: openSMILE ComParE_2016 functionals;
    ``frames``: the ``features`` extractor's frames pooled over the utterance, ``pooling`` ``mean_std`` or ``mean``;
    ``logmel``: its old name; ``auto``: ``compare`` with log-mel features, ``frames`` otherwise; ``embeddings``: the
    CNN embeddings of run ``embedding_run``), the inner folds of its grouped grid search, and how embeddings are
    taken (``utterance`` or per ``window``)."""

    features: str = "auto"
    pooling: str = "mean_std"
    inner_folds: int = 3
    embedding_run: str | None = None
    embedding_level: str = "utterance"


@dataclass
class SvmBaselineConfig(BaselineConfig):
    """Linear SVM: ``svm_c`` searched by grouped inner CV."""

    svm_c: list[float] = field(default_factory=lambda: [0.0001, 0.001, 0.01, 0.1, 1.0])


@dataclass
class LrBaselineConfig(BaselineConfig):
    """Logistic regression: ``lr_c`` searched by grouped inner CV."""

    lr_c: list[float] = field(default_factory=lambda: [0.001, 0.01, 0.1, 1.0, 10.0])


@dataclass
class RfBaselineConfig(BaselineConfig):
    """Random forest of ``rf_trees`` trees."""

    rf_trees: int = 500


@dataclass
class DnnBaselineConfig(BaselineConfig):
    """A dropout MLP on utterance vectors."""

    dnn_hidden: list[int] = field(default_factory=lambda: [256, 256, 256])
    dnn_dropout: float = 0.5
    dnn_epochs: int = 60
    dnn_lr: float = 0.001
    dnn_batch_size: int = 64


@dataclass
class SvmConfig(ModelConfig):
    """``model=svm``."""

    kind: str = "svm"
    baseline: SvmBaselineConfig = field(default_factory=SvmBaselineConfig)


@dataclass
class LrConfig(ModelConfig):
    """``model=lr`` (``model=lr_emb``: on a CNN run's embeddings)."""

    kind: str = "lr"
    baseline: LrBaselineConfig = field(default_factory=LrBaselineConfig)


@dataclass
class RfConfig(ModelConfig):
    """``model=rf``."""

    kind: str = "rf"
    baseline: RfBaselineConfig = field(default_factory=RfBaselineConfig)


@dataclass
class DnnConfig(ModelConfig):
    """``model=dnn``."""

    kind: str = "dnn"
    baseline: DnnBaselineConfig = field(default_factory=DnnBaselineConfig)


# --- votes and augmentation -------------------------------------------------------------------------------------


@dataclass
class AggregationConfig:
    """How window posteriors become an utterance decision (``kind``: majority, mean, logmean, weighted (Ridge, the
    paper's) or weighted_soft (the default)); the Ridge settings apply to the weighted votes, which every CNN run also
    scores."""

    kind: str = "weighted_soft"
    ridge_alpha: float = 1.0
    use_energy: bool = True
    method: str | None = None  # the old name of ``kind``: read as it, with a deprecation line


@dataclass
class AugmentConfig:
    """Training-only augmentation (``kind``: none or pitch, shift with Rubberband)."""

    kind: str = "none"
    semitones: list[float] = field(default_factory=list)
    crispness: int = 6
    name: str | None = None  # the old name of ``kind``: read as it, with a deprecation line


#: ``(group, kind, dataclass)`` of every built-in kind: stored in Hydra's ConfigStore as ``<group>/<kind>_schema``.
BUILTIN_SCHEMAS: tuple[tuple[str, str, type], ...] = (
    ("corpus", "csv", CsvCorpusConfig),
    ("corpus", "folders", FoldersCorpusConfig),
    ("corpus", "manifest", ManifestCorpusConfig),
    ("corpus", "demo", DemoCorpusConfig),
    ("corpus", "speech", SpeechCorpusConfig),
    ("corpus", "emodb", EmoDbCorpusConfig),
    ("corpus", "ravdess", RavdessCorpusConfig),
    ("corpus", "cremad", CremadCorpusConfig),
    ("corpus", "iemocap", IemocapCorpusConfig),
    ("corpus", "compare", CompareCorpusConfig),
    ("features", "fbank", LogMelConfig),
    ("features", "melspec", LogMelConfig),
    ("features", "ssl", SslConfig),
    ("model", "cnn", CNNConfig),
    ("model", "ssl_head", SslHeadConfig),
    ("model", "svm", SvmConfig),
    ("model", "lr", LrConfig),
    ("model", "rf", RfConfig),
    ("model", "dnn", DnnConfig),
)
