"""Log-mel filterbank features (Kaldi-compatible FBANK or torchaudio MelSpectrogram).

Shapes follow torchaudio: a waveform ``(time,)`` becomes a feature matrix ``(frames, n_mels)``. The per-frame log
energy ``(frames,)`` (log of the summed mel energies) is returned beside it for the weighted vote.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torchaudio

from paraling.device import to_numpy
from paraling.errors import ConfigError, FeatureError

__all__ = ["LogMelSpec", "extract_logmel"]

_LOG_FLOOR = 1e-10


@dataclass(frozen=True)
class LogMelSpec:
    """What defines a feature matrix; its JSON is part of the cache key."""

    kind: str = "fbank"
    sample_rate: int = 16000
    n_mels: int = 40
    frame_length_ms: float = 25.0
    frame_shift_ms: float = 10.0
    f_min: float = 20.0
    f_max: float | None = None

    @classmethod
    def from_config(cls, cfg: object) -> LogMelSpec:
        """Build from a ``features`` config node (extra keys such as ``normalize`` are ignored)."""
        fields = {k: getattr(cfg, k) for k in cls.__dataclass_fields__ if hasattr(cfg, k)}
        spec = cls(**fields)
        if spec.kind not in ("fbank", "melspec"):
            raise ConfigError(f"features.kind must be 'fbank' or 'melspec', but got kind={spec.kind!r}")
        nyq = spec.sample_rate / 2
        if spec.f_max is not None and not spec.f_min < spec.f_max <= nyq:
            raise ConfigError(f"features.f_max must lie in (f_min, {nyq}], but got f_max={spec.f_max}")
        return spec

    def key(self) -> str:
        """Stable JSON used in cache keys."""
        return json.dumps(asdict(self), sort_keys=True)

    @property
    def n_features(self) -> int:
        """Values per frame (the mel bands)."""
        return self.n_mels

    def extract(self, wave: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:func:`extract_logmel` of ``wave`` (the :class:`~paraling.features.registry.Extractor` interface)."""
        return extract_logmel(wave, self)

    @property
    def win_length(self) -> int:
        """Frame length in samples."""
        return round(self.sample_rate * self.frame_length_ms / 1000)

    @property
    def hop_length(self) -> int:
        """Frame shift in samples."""
        return round(self.sample_rate * self.frame_shift_ms / 1000)


def _melspec(spec: LogMelSpec) -> torchaudio.transforms.MelSpectrogram:
    n_fft = 1 << (spec.win_length - 1).bit_length()
    return torchaudio.transforms.MelSpectrogram(
        sample_rate=spec.sample_rate,
        n_fft=n_fft,
        win_length=spec.win_length,
        hop_length=spec.hop_length,
        f_min=spec.f_min,
        f_max=spec.f_max,
        n_mels=spec.n_mels,
        center=False,
        power=2.0,
    )


def extract_logmel(wave: np.ndarray, spec: LogMelSpec) -> tuple[np.ndarray, np.ndarray]:
    """Compute log-mel features of a mono waveform.

    Args:
        wave: Samples in [-1, 1], shape ``(time,)``, at ``spec.sample_rate``.
        spec: Feature definition.

    Returns:
        ``(features, energy)``: float32 arrays of shapes ``(frames, n_mels)`` and ``(frames,)``. A clip shorter than
        one frame is zero-padded to exactly one frame.
    """
    if wave.ndim != 1:
        raise FeatureError(f"extract_logmel expects a mono waveform of shape (time,), got {wave.shape}")
    if len(wave) < spec.win_length:
        wave = np.pad(wave, (0, spec.win_length - len(wave)))
    x = torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32))
    with torch.no_grad():
        if spec.kind == "fbank":
            feats = torchaudio.compliance.kaldi.fbank(
                x.unsqueeze(0) * 32768.0,
                num_mel_bins=spec.n_mels,
                frame_length=spec.frame_length_ms,
                frame_shift=spec.frame_shift_ms,
                sample_frequency=spec.sample_rate,
                low_freq=spec.f_min,
                high_freq=spec.f_max if spec.f_max is not None else 0.0,
                dither=0.0,
                energy_floor=0.0,
            )
        else:
            mel = _melspec(spec)(x * 32768.0)
            feats = torch.log(mel.clamp_min(_LOG_FLOOR)).T
        energy = torch.logsumexp(feats, dim=1)
    return to_numpy(feats).astype(np.float32, copy=False), to_numpy(energy).astype(np.float32, copy=False)
