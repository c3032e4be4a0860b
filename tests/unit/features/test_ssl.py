"""``features=ssl``: speech encoders' hidden states from a local folder, their cache key, chunking, bad input."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from paraling.errors import ConfigError
from paraling.features import FeatureStore, make_extractor
from paraling.features.ssl import SslExtractor, select_layers

HIDDEN, LAYERS = 32, 2  # paraling/bench/encoders.py
Encoder = Callable[[str], Path]


def _wave(seconds: float, seed: int = 0) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal(int(16000 * seconds))).astype(np.float32)


def _ssl(folder: Path, **kw: object) -> SslExtractor:
    return SslExtractor.from_config({"model": str(folder), "device": "cpu", **kw})


@pytest.mark.parametrize("kind", ["wav2vec2", "wav2vec2-stable", "hubert", "wavlm", "whisper"])
def test_every_family_gives_each_hidden_state_per_20ms_frame(tiny_encoder: Encoder, kind: str) -> None:
    ex = _ssl(tiny_encoder(kind))
    feats, energy = ex.extract(_wave(1.5))
    assert ex.groups == LAYERS + 1 and ex.n_features == (LAYERS + 1) * HIDDEN
    assert feats.shape == (ex.encoder().frames(24000), ex.n_features) and energy.shape == (feats.shape[0],)
    assert abs(feats.shape[0] - 75) <= 1 and feats.dtype == np.float32 and np.isfinite(feats).all()
    last = _ssl(tiny_encoder(kind), layers=-1).extract(_wave(1.5))[0]
    np.testing.assert_allclose(last, feats[:, -HIDDEN:], rtol=1e-5, atol=1e-5)  # the same state, alone
    assert ex.encoder().identity.startswith("folder:")


def test_layer_choice_names_the_valid_range(tiny_encoder: Encoder) -> None:
    assert select_layers("all", 3, "m") == [0, 1, 2] and select_layers([0, -1], 3, "m") == [0, 2]
    with pytest.raises(ConfigError, match=r"hidden states 0\.\.2 .*-3\.\.-1"):
        _ = _ssl(tiny_encoder("hubert"), layers=7).n_features
    with pytest.raises(ConfigError, match="at most once"):
        select_layers([1, 1], 3, "m")
    with pytest.raises(ConfigError, match="an index or a list"):
        select_layers("last", 3, "m")


def test_long_recordings_are_chunked_to_the_same_frames(tiny_encoder: Encoder) -> None:
    # the large models' layout: layer-normalised convolutions (wav2vec2-base's group norm spans the whole input)
    whole = _ssl(tiny_encoder("wav2vec2-stable"))
    chunked = _ssl(tiny_encoder("wav2vec2-stable"), chunk_seconds=0.5, context_seconds=0.2)
    a, b = whole.extract(_wave(3.1))[0], chunked.extract(_wave(3.1))[0]
    assert a.shape == b.shape
    # the first hidden state (conv features + position embedding) sees only its receptive field: chunking with
    # context reproduces it away from the recording's edges
    np.testing.assert_allclose(a[10:-10, :HIDDEN], b[10:-10, :HIDDEN], atol=1e-4)


def test_a_clip_shorter_than_one_frame_gives_one_frame(tiny_encoder: Encoder) -> None:
    feats, energy = _ssl(tiny_encoder("wavlm")).extract(_wave(0.005))
    assert feats.shape == (1, (LAYERS + 1) * HIDDEN) and np.isfinite(energy).all()


def test_other_sample_rates_are_resampled_and_the_cache_counts_extractions(
    tiny_encoder: Encoder, tmp_path: Path
) -> None:
    wav8k = tmp_path / "a.wav"
    sf.write(wav8k, _wave(1.0)[:8000], 8000)
    spec = make_extractor({"kind": "ssl", "model": str(tiny_encoder("wav2vec2")), "device": "cpu", "layers": 1})
    store = FeatureStore(tmp_path / "cache", spec)
    f1, _ = store.get(wav8k)
    f2, _ = FeatureStore(tmp_path / "cache", spec).get(wav8k)  # another run: a cache hit, no extraction
    assert f1.shape == (spec.encoder().frames(16000), HIDDEN) and spec.calls == 1 and store.misses == 1
    np.testing.assert_array_equal(f1, f2)
    other = make_extractor({"kind": "ssl", "model": str(tiny_encoder("wav2vec2")), "device": "cpu", "layers": 2})
    assert FeatureStore(tmp_path / "cache", other).key(wav8k) != store.key(wav8k)  # layers are in the key


def test_the_key_follows_the_weights_not_the_path(
    tiny_encoder: Encoder, save_encoder: Callable[..., Path], tmp_path: Path
) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(tiny_encoder("hubert"), copy)
    assert _ssl(copy).key() == _ssl(tiny_encoder("hubert")).key()
    retrained = save_encoder("hubert", tmp_path / "other", seed=1)
    assert _ssl(retrained).key() != _ssl(copy).key()
    with pytest.raises(ConfigError, match="but the model was trained on folder:"):
        _ssl(retrained, encoder_id=_ssl(copy).identity).extract(_wave(0.5))


def test_bad_encoders_are_one_clear_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="holds no speech encoder"):
        _ = _ssl(tmp_path / "empty").n_features
    bert = tmp_path / "bert"
    bert.mkdir()
    (bert / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": 8}))
    (bert / "model.safetensors").write_bytes(b"")
    with pytest.raises(ConfigError, match="holds a bert model, not a speech encoder"):
        _ = _ssl(bert).n_features
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "config.json").write_text(json.dumps({"model_type": "wav2vec2"}))
    torch.save({}, pickled / "pytorch_model.bin")
    with pytest.raises(ConfigError, match="no safetensors weights"):
        _ = _ssl(pickled).n_features
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ConfigError, match=r"HF_HUB_OFFLINE is set.*huggingface-cli download org/no-such-encoder"):
        _ = _ssl(Path("org/no-such-encoder")).n_features
    with pytest.raises(ConfigError, match="needs features.model"):
        SslExtractor.from_config({"kind": "ssl"})


def test_top_layers_continue_from_the_cached_state(tiny_encoder: Encoder) -> None:
    for kind in ("wav2vec2", "wav2vec2-stable", "hubert"):
        enc = _ssl(tiny_encoder(kind)).encoder()
        states = enc.hidden_states(_wave(1.0), torch.device("cpu"), None)
        top = enc.top_layers(1).eval()
        with torch.no_grad():
            out = top(states[-2][None])[0]
        torch.testing.assert_close(out, states[-1], rtol=1e-4, atol=1e-4)
    with pytest.raises(ConfigError, match="WavLM"):
        _ssl(tiny_encoder("wavlm")).encoder().top_layers(1)
    with pytest.raises(ConfigError, match=r"1\.\.2"):
        _ssl(tiny_encoder("hubert")).encoder().top_layers(3)


def test_the_installed_speaker_encoder_is_exact_under_chunking() -> None:
    whole = SslExtractor.from_config({"backend": "resemblyzer", "device": "cpu"})
    chunked = SslExtractor.from_config({"backend": "resemblyzer", "device": "cpu", "chunk_seconds": 0.37})
    wave = _wave(2.0)
    a, b = whole.extract(wave)[0], chunked.extract(wave)[0]
    assert a.shape == (201, 4 * 256) and whole.identity.startswith("resemblyzer:")
    np.testing.assert_array_equal(a, b)  # the LSTMs carry their state from chunk to chunk


def test_the_extractor_follows_the_runs_device_and_oom_is_not_a_bad_file(tiny_encoder: Encoder, tmp_path: Path) -> None:
    from paraling.errors import ResourceError

    node = {"kind": "ssl", "model": str(tiny_encoder("wav2vec2"))}
    assert make_extractor(node, device="cpu").device == "cpu"  # features.device=auto: the run's device
    assert make_extractor({**node, "device": "cuda"}, device="cpu").device == "cuda"  # an explicit one stays

    class OutOfMemory(SslExtractor):
        def extract(self, wave: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")

    wav = tmp_path / "a.wav"
    sf.write(wav, _wave(0.5), 16000)
    store = FeatureStore(tmp_path / "cache", OutOfMemory.from_config(node))
    with pytest.raises(ResourceError, match="out of memory while extracting features.*features.chunk_seconds"):
        store.get(wav)
