"""One error hierarchy for paraling.

Every failure a user can cause (bad audio, bad corpus, bad configuration, missing binaries) raises a subclass of
:class:`ParalingError` whose message names the offending file, key or value *and* the fix. The CLI catches
:class:`ParalingError` and prints its message without a traceback.
"""

from __future__ import annotations


class ParalingError(Exception):
    """Base class of every error paraling raises on purpose."""

    exit_code: int = 2


class ConfigError(ParalingError, ValueError):
    """A configuration value, key or study file is invalid."""


class DeviceError(ConfigError):
    """The requested device does not exist on this machine (``device=cuda`` without a GPU, an unknown name)."""


class CorpusError(ParalingError):
    """The corpus (CSV, folders, manifest) is malformed: missing labels/speakers, duplicate ids, bad paths."""


class AudioError(ParalingError):
    """An audio file cannot be read or is unusable (empty, corrupt, non-finite samples)."""

    def __init__(self, path: object, problem: str, fix: str = "") -> None:
        self.path = str(path)
        self.problem = problem
        self.fix = fix
        msg = f"{self.path}: {problem}"
        if fix:
            msg += f" Fix: {fix}"
        super().__init__(msg)


class FeatureError(ParalingError):
    """Feature extraction or the feature cache failed."""


class WindowError(ParalingError):
    """An utterance cannot be cut into windows under the configured policy."""


class ModelError(ParalingError):
    """A model cannot be built from its configuration."""


class TransferError(ModelError):
    """Layers cannot be transferred from a source model (missing layer, shape mismatch, unknown source)."""


class TrainingError(ParalingError):
    """Training diverged (non-finite loss) or cannot proceed."""


class TrackingError(ParalingError):
    """The MLflow store cannot be reached or holds inconsistent runs."""


class TrackingStoreError(TrackingError):
    """The tracking store stopped answering during a run (after MLflow's own retries with backoff)."""


class SearchError(ParalingError):
    """An Optuna study cannot be created, resumed or run."""


class StorageUnavailableError(SearchError):
    """The Optuna storage's database stopped answering for longer than the sweep waits (``storage.outage_timeout``)."""


class EnsembleError(ParalingError):
    """Runs cannot be combined into an ensemble (misaligned utterances or folds, no runs)."""


class DependencyError(ParalingError):
    """An external program or optional package is missing; the message says how to install it."""


class ResourceError(ParalingError):
    """Not enough disk space or memory to proceed safely."""


class Pruned(ParalingError):  # noqa: N818 - mirrors optuna.TrialPruned
    """Raised by a reporter to stop a training run early because a search pruned it."""
