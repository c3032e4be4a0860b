"""espeak-ng synthesis through the espeakng-loader wheel: real speech, deterministic, validated arguments."""

from __future__ import annotations

import ctypes
import sys

import numpy as np
import pytest

from paraling.data import synth
from paraling.data.synth import synthesize
from paraling.errors import ConfigError, DependencyError

TEXT = "The quick brown fox jumps over the lazy dog."


def test_produces_plausible_speech() -> None:
    wave = synthesize(TEXT, voice="en+m3", rate_wpm=170, sample_rate=16000)
    assert wave.dtype == np.float32 and wave.ndim == 1
    seconds = wave.size / 16000
    assert 1.5 < seconds < 5.0  # 9 words at 170 wpm ~ 3 s
    assert np.abs(wave).max() <= 1.0
    rms = float(np.sqrt(np.mean(wave**2)))
    assert rms > 0.02  # not silent
    # Speech is bursty: 20 ms frame energies vary a lot (syllables and pauses), unlike a tone or noise.
    frames = wave[: wave.size // 320 * 320].reshape(-1, 320)
    energy_db = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-10)
    assert np.percentile(energy_db, 90) - np.percentile(energy_db, 10) > 20
    # Most energy lies in the speech band (100-4000 Hz).
    spec = np.abs(np.fft.rfft(wave)) ** 2
    freqs = np.fft.rfftfreq(wave.size, 1 / 16000)
    assert spec[(freqs > 100) & (freqs < 4000)].sum() / spec.sum() > 0.8


def test_rate_and_voice_change_the_output() -> None:
    slow = synthesize(TEXT, voice="en+m3", rate_wpm=120)
    fast = synthesize(TEXT, voice="en+m3", rate_wpm=240)
    assert slow.size > 1.5 * fast.size
    other = synthesize(TEXT, voice="en+f2", rate_wpm=120)
    assert other.size != slow.size or not np.array_equal(other, slow)


def test_native_rate_and_resampling() -> None:
    native = synthesize("Hello there.", voice="en", sample_rate=synth.NATIVE_SAMPLE_RATE)
    low = synthesize("Hello there.", voice="en", sample_rate=16000)
    assert abs(low.size - native.size * 16000 / synth.NATIVE_SAMPLE_RATE) <= 2


def test_deterministic_regardless_of_history() -> None:
    # libespeak-ng keeps hidden state between calls; synthesize() reloads it so outputs are pure.
    first = synthesize(TEXT, voice="en+m3", rate_wpm=150, pitch=40)
    synthesize("Something completely different, said in German.", voice="de+f2", rate_wpm=220, pitch=90)
    again = synthesize(TEXT, voice="en+m3", rate_wpm=150, pitch=40)
    assert np.array_equal(first, again)


def test_breathy_voices_ignore_the_c_rand_state() -> None:
    # Variants like f2 add breath noise from libc rand(); its process-wide state must not leak into the output.
    libc = ctypes.CDLL(None)
    first = synthesize("Her sister studies music.", voice="en-gb-x-rp+f2")
    libc.srand(ctypes.c_uint(987))
    for _ in range(1234):
        libc.rand()
    assert np.array_equal(synthesize("Her sister studies music.", voice="en-gb-x-rp+f2"), first)


def test_other_languages() -> None:
    wave = synthesize("Сегодня очень хорошая погода.", voice="ru+f3")
    assert wave.size > 8000 and np.sqrt(np.mean(wave**2)) > 0.02


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"voice": "zz+nope"}, "no voice"),
        ({"rate_wpm": 20}, "rate_wpm"),
        ({"pitch": 150}, "pitch"),
        ({"sample_rate": 0}, "sample_rate"),
    ],
)
def test_invalid_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        synthesize("Hello.", **kwargs)


def test_empty_text() -> None:
    with pytest.raises(ConfigError, match="empty"):
        synthesize("   ")


def test_missing_wheel_raises_dependency_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(synth, "_private_lib", None)
    monkeypatch.setitem(sys.modules, "espeakng_loader", None)  # makes the import fail
    with pytest.raises(DependencyError, match="pip install espeakng-loader"):
        synthesize("Hello.")
