"""The one audio decoder and resampler of paraling.

Everything that reads audio (recipes, features, augmentation, prediction) goes through :func:`load_audio`, so every
file is treated alike: decoded with soundfile (WAV, FLAC, OGG/Vorbis, 8/16/24/32-bit integer or float), mixed down to
mono by averaging channels, resampled to the requested rate with a polyphase filter, and checked for emptiness and
non-finite samples.
"""

from __future__ import annotations

import hashlib
import logging
from fractions import Fraction
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from paraling.errors import AudioError

__all__ = ["MAX_RATE", "MAX_SECONDS", "MIN_RATE", "AudioInfo", "audio_info", "file_digest", "load_audio", "resample"]

log = logging.getLogger(__name__)

_CONVERT_FIX = "convert it with e.g. `sox IN.any -r 16000 -c 1 OUT.wav` or remove it from the corpus."

#: Sample rates paraling reads (a header outside them is damaged or not speech audio: a 1 Hz header on an 80 KB file
#: is 11 hours of samples after resampling, a 2 GHz one cannot be resampled).
MIN_RATE, MAX_RATE = 1_000, 768_000
#: The longest recording decoded at once (6 hours): bounds the memory a header can ask for.
MAX_SECONDS = 6 * 3600.0


class AudioInfo:
    """Header facts of an audio file, read without decoding the samples."""

    __slots__ = ("channels", "duration", "frames", "sample_rate")

    def __init__(self, sample_rate: int, channels: int, frames: int) -> None:
        self.sample_rate = sample_rate
        self.channels = channels
        self.frames = frames
        self.duration = frames / sample_rate if sample_rate else 0.0


def _check_file(path: Path) -> None:
    if not path.exists():
        raise AudioError(path, "file does not exist.", "check the path in the corpus CSV/manifest.")
    if path.is_dir():
        raise AudioError(path, "is a directory, not an audio file.", "point the corpus at audio files.")
    if path.stat().st_size == 0:
        raise AudioError(path, "file is empty (0 bytes).", "re-export the recording or remove it from the corpus.")


def audio_info(path: str | Path) -> AudioInfo:
    """Read the header of ``path``.

    Raises:
        AudioError: When the file is missing, empty or not decodable audio.
    """
    path = Path(path)
    _check_file(path)
    try:
        with open(path, "rb") as fh:  # a file object also works for names that are not valid UTF-8
            info = sf.info(fh)
    except Exception as exc:  # soundfile raises LibsndfileError/RuntimeError/TypeError
        raise AudioError(path, f"not a readable audio file ({exc}).", _CONVERT_FIX) from exc
    if info.frames <= 0:
        raise AudioError(path, "contains no samples.", "re-export the recording or remove it from the corpus.")
    _check_header(path, int(info.samplerate), int(info.frames))
    return AudioInfo(int(info.samplerate), int(info.channels), int(info.frames))


def _check_header(path: Path, sample_rate: int, frames: int) -> None:
    """Refuse a header whose rate or length would make decoding or resampling unbounded."""
    if not MIN_RATE <= sample_rate <= MAX_RATE:
        raise AudioError(
            path,
            f"its header says {sample_rate} Hz, outside the {MIN_RATE}-{MAX_RATE} Hz paraling reads "
            "(a damaged header?).",
            _CONVERT_FIX,
        )
    seconds = frames / sample_rate
    if seconds > MAX_SECONDS:
        raise AudioError(
            path,
            f"its header says {seconds / 3600:.1f} hours of audio, more than the {MAX_SECONDS / 3600:.0f} hours "
            "paraling decodes at once.",
            "cut it into shorter files (e.g. `sox IN.wav OUT.wav trim 0 3600 : newfile : restart`).",
        )


def resample(wave: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Resample ``wave`` of shape ``(..., time)`` from ``orig_sr`` to ``target_sr`` (polyphase, anti-aliased)."""
    if orig_sr == target_sr:
        return wave
    frac = Fraction(target_sr, orig_sr).limit_denominator(1000)
    out = resample_poly(wave, frac.numerator, frac.denominator, axis=-1)
    return out.astype(np.float32, copy=False)


def load_audio(path: str | Path, sample_rate: int | None = None) -> np.ndarray:
    """Decode ``path`` to a mono float32 waveform in [-1, 1].

    Args:
        path: Audio file (anything libsndfile reads: WAV, FLAC, OGG, ...).
        sample_rate: Target rate; ``None`` keeps the file's rate.

    Returns:
        Array of shape ``(time,)``, dtype float32.

    Raises:
        AudioError: Naming the file and the fix, for missing, empty, corrupt or non-finite audio.
    """
    path = Path(path)
    _check_file(path)
    try:
        with open(path, "rb") as fh:
            info = sf.info(fh)
            _check_header(path, int(info.samplerate), int(info.frames))
            fh.seek(0)
            data, sr = sf.read(fh, dtype="float32", always_2d=True)
    except AudioError:
        raise
    except Exception as exc:
        raise AudioError(path, f"cannot be decoded as audio ({exc}).", _CONVERT_FIX) from exc
    if data.shape[0] == 0:
        raise AudioError(path, "contains no samples.", "re-export the recording or remove it from the corpus.")
    if not np.isfinite(data).all():
        bad = int((~np.isfinite(data)).sum())
        raise AudioError(path, f"contains {bad} NaN/Inf samples.", "re-export it as 16-bit PCM WAV.")
    wave = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if sample_rate is not None and sr != sample_rate:
        wave = resample(wave, int(sr), int(sample_rate))
    return np.ascontiguousarray(wave, dtype=np.float32)


def file_digest(path: str | Path, chunk: int = 1 << 20) -> str:
    """Return a BLAKE2b hex digest (20 bytes) of the file's bytes, used as the feature-cache key."""
    h = hashlib.blake2b(digest_size=20)
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()
