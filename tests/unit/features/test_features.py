"""Log-mel extraction and the feature cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from paraling.errors import AudioError, ConfigError
from paraling.features import FeatureStore, LogMelSpec, extract_logmel


def test_fbank_shape_25ms_10ms() -> None:
    x = np.random.default_rng(0).normal(0, 0.1, 16000).astype(np.float32)
    f, e = extract_logmel(x, LogMelSpec())
    assert f.shape == (98, 40) and e.shape == (98,)  # Kaldi snip_edges: 1 + (16000 - 400) // 160
    f2, _ = extract_logmel(x, LogMelSpec(n_mels=60, frame_shift_ms=20.0))
    assert f2.shape == (49, 60)
    f3, _ = extract_logmel(x, LogMelSpec(kind="melspec"))
    assert f3.shape[1] == 40 and abs(f3.shape[0] - 98) <= 2
    assert np.isfinite(f).all() and np.isfinite(f3).all()


def test_louder_band_has_more_energy() -> None:
    t = np.arange(16000) / 16000
    low = np.sin(2 * np.pi * 200 * t).astype(np.float32)
    high = np.sin(2 * np.pi * 4000 * t).astype(np.float32)
    fl, _ = extract_logmel(low, LogMelSpec())
    fh, _ = extract_logmel(high, LogMelSpec())
    assert fl.mean(0).argmax() < fh.mean(0).argmax()


def test_silence_and_too_short_are_finite() -> None:
    f, _ = extract_logmel(np.zeros(16000, np.float32), LogMelSpec())
    assert np.isfinite(f).all()
    f, _ = extract_logmel(np.zeros(1, np.float32), LogMelSpec())
    assert f.shape == (1, 40)


def test_spec_validation() -> None:
    class C:
        kind = "mfcc"

    with pytest.raises(ConfigError, match="kind"):
        LogMelSpec.from_config(C())


def test_cache_hits_and_key_changes(tmp_path: Path) -> None:
    wav = tmp_path / "a.wav"
    sf.write(wav, np.random.default_rng(1).normal(0, 0.1, 8000), 16000)
    store = FeatureStore(tmp_path / "cache", LogMelSpec())
    f1, e1 = store.get(wav)
    f2, e2 = store.get(wav)
    assert (store.misses, store.hits) == (1, 1)
    np.testing.assert_array_equal(f1, f2)
    np.testing.assert_array_equal(e1, e2)
    other = FeatureStore(tmp_path / "cache", LogMelSpec(n_mels=30))
    assert other.key(wav) != store.key(wav)
    assert store.key(wav, "pitch+1") != store.key(wav)
    assert other.get(wav)[0].shape[1] == 30 and other.misses == 1
    files = list((tmp_path / "cache").rglob("*.npy"))
    assert len(files) == 2 and not list((tmp_path / "cache").rglob("*.tmp"))


def test_corrupt_cache_entry_is_rebuilt(tmp_path: Path) -> None:
    wav = tmp_path / "a.wav"
    sf.write(wav, np.random.default_rng(1).normal(0, 0.1, 8000), 16000)
    store = FeatureStore(tmp_path / "cache", LogMelSpec())
    f1, _ = store.get(wav)
    entry = next((tmp_path / "cache").rglob("*.npy"))
    entry.write_bytes(entry.read_bytes()[:50])
    fresh = FeatureStore(tmp_path / "cache", LogMelSpec())
    f2, _ = fresh.get(wav)
    assert fresh.misses == 1
    np.testing.assert_allclose(f1, f2)


def test_cache_names_bad_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.wav"
    bad.write_text("nope")
    with pytest.raises(AudioError, match="bad.wav"):
        FeatureStore(tmp_path / "c", LogMelSpec()).get(bad)
