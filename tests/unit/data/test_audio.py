"""The one audio decoder: formats, channels, rates and every bad-input case gives an AudioError naming the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from paraling.data.audio import audio_info, file_digest, load_audio, resample
from paraling.errors import AudioError


def _tone(sr: int, seconds: float = 0.5, channels: int = 1) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    x = 0.5 * np.sin(2 * np.pi * 440 * t)
    return np.stack([x] * channels, axis=1) if channels > 1 else x


@pytest.mark.parametrize(
    ("subtype", "fmt", "suffix"),
    [
        ("PCM_U8", "WAV", ".wav"),
        ("PCM_16", "WAV", ".wav"),
        ("PCM_24", "WAV", ".wav"),
        ("FLOAT", "WAV", ".wav"),
        ("PCM_16", "FLAC", ".flac"),
        ("VORBIS", "OGG", ".ogg"),
    ],
)
def test_formats_decode_to_mono_float(tmp_path: Path, subtype: str, fmt: str, suffix: str) -> None:
    p = tmp_path / f"a{suffix}"
    sf.write(p, _tone(16000), 16000, subtype=subtype, format=fmt)
    x = load_audio(p, 16000)
    assert x.dtype == np.float32 and x.ndim == 1
    assert abs(len(x) - 8000) < 200
    assert 0.3 < np.abs(x).max() <= 1.0


def test_stereo_and_six_channels_are_averaged(tmp_path: Path) -> None:
    t = _tone(16000)
    for ch in (2, 6):
        gains = np.linspace(-0.5, 1.0, ch)  # every channel different, some inverted
        p = tmp_path / f"c{ch}.wav"
        sf.write(p, np.stack([t * g for g in gains], axis=1), 16000, subtype="FLOAT")
        x = load_audio(p)
        assert x.ndim == 1 and len(x) == len(t)
        np.testing.assert_allclose(x, t * gains.mean(), atol=1e-6)
        assert not np.allclose(x, t * gains[0], atol=1e-3)  # not just the first channel
    p = tmp_path / "opposite.wav"
    t = _tone(16000)
    sf.write(p, np.stack([t, -t], axis=1), 16000, subtype="FLOAT")
    assert np.abs(load_audio(p)).max() < 1e-6


@pytest.mark.parametrize("sr", [8000, 44100, 48000])
def test_resampled_to_target_rate(tmp_path: Path, sr: int) -> None:
    p = tmp_path / "r.wav"
    sf.write(p, _tone(sr, 1.0), sr)
    x = load_audio(p, 16000)
    assert abs(len(x) - 16000) <= 2
    spec = np.abs(np.fft.rfft(x))
    assert abs(np.argmax(spec) * 16000 / len(x) - 440) < 5


def test_resample_identity() -> None:
    x = np.ones(10, np.float32)
    assert resample(x, 16000, 16000) is x


def test_empty_file(tmp_path: Path) -> None:
    p = tmp_path / "empty.wav"
    p.write_bytes(b"")
    with pytest.raises(AudioError, match=r"empty\.wav.*0 bytes.*Fix"):
        load_audio(p)


def test_non_audio_and_truncated(tmp_path: Path) -> None:
    p = tmp_path / "text.wav"
    p.write_text("this is not audio")
    with pytest.raises(AudioError, match="text.wav"):
        load_audio(p)
    good = tmp_path / "good.wav"
    sf.write(good, _tone(16000), 16000)
    bad = tmp_path / "trunc.wav"
    bad.write_bytes(good.read_bytes()[:30])
    with pytest.raises(AudioError, match="trunc.wav"):
        audio_info(bad)


def test_missing_file_and_nan(tmp_path: Path) -> None:
    with pytest.raises(AudioError, match="does not exist"):
        load_audio(tmp_path / "nope.wav")
    p = tmp_path / "nan.wav"
    x = _tone(16000).astype(np.float32)
    x[10] = np.nan
    sf.write(p, x, 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match="NaN"):
        load_audio(p)


def test_digest_depends_on_bytes(tmp_path: Path) -> None:
    a, b = tmp_path / "a.wav", tmp_path / "b.wav"
    sf.write(a, _tone(16000), 16000)
    sf.write(b, _tone(16000) * 0.5, 16000)
    assert file_digest(a) == file_digest(a) != file_digest(b)


def _with_header_rate(path: Path, rate: int) -> Path:
    """A real 16-bit WAV whose header claims ``rate`` (the samples are 40,000 random values)."""
    import struct

    sf.write(path, (np.random.default_rng(0).standard_normal(40_000) * 1000).astype(np.int16), 16000)
    b = bytearray(path.read_bytes())
    b[24:28], b[28:32] = struct.pack("<I", rate), struct.pack("<I", rate * 2)
    path.write_bytes(bytes(b))
    return path


@pytest.mark.parametrize(("rate", "message"), [(1, "says 1 Hz"), (2_000_000_000, "says 2000000000 Hz")])
def test_a_header_rate_outside_what_audio_has_is_refused_before_decoding(
    tmp_path: Path, rate: int, message: str
) -> None:
    """An 80 KB WAV claiming 1 Hz is 11 hours at 16 kHz (~17 GB of float32 after resampling); 2 GHz cannot be
    resampled at all: both are one AudioError naming the file."""
    path = _with_header_rate(tmp_path / "x.wav", rate)
    with pytest.raises(AudioError, match=message) as exc:
        load_audio(path, 16000)
    assert str(path) in str(exc.value)
    with pytest.raises(AudioError, match=message):
        audio_info(path)


def test_a_header_longer_than_six_hours_is_refused(tmp_path: Path) -> None:
    path = _with_header_rate(tmp_path / "long.wav", 1000)  # 40,000 samples at 1 kHz: 40 s, fine
    assert len(load_audio(path, 16000)) == 640_000
    from paraling.data import audio

    with pytest.raises(AudioError, match="hours of audio"):
        audio._check_header(path, 1000, int(audio.MAX_SECONDS * 1000) + 1)
