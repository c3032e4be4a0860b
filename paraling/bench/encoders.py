"""Tiny, randomly initialised speech encoders saved the way real ones are (``save_pretrained``: config.json and
model.safetensors), for the benchmark and the tests: they run the same loading code users run with real weights,
with nothing downloaded.

The convolutional front-ends stride 320 samples (50 frames per second at 16 kHz), as the real wav2vec 2.0, HuBERT
and WavLM do; the Whisper encoder keeps its 30-s input and 1500 positions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

__all__ = ["HIDDEN", "KINDS", "LAYERS", "save_tiny_encoder"]

KINDS = ("wav2vec2", "wav2vec2-stable", "hubert", "wavlm", "whisper")
HIDDEN, LAYERS = 32, 2


def save_tiny_encoder(kind: str, folder: Path, seed: int = 0) -> Path:
    """Write a tiny ``kind`` encoder (one of :data:`KINDS`) into ``folder``; returns ``folder``."""
    import transformers as tf

    torch.manual_seed(seed)
    conv: dict[str, Any] = {
        "conv_dim": (16, 16, 16),
        "conv_stride": (10, 8, 4),
        "conv_kernel": (10, 8, 4),
        "num_conv_pos_embeddings": 16,
        "num_conv_pos_embedding_groups": 2,
    }
    common: dict[str, Any] = {
        "hidden_size": HIDDEN,
        "num_hidden_layers": LAYERS,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        **conv,
    }
    model: Any
    if kind == "wav2vec2":
        model = tf.Wav2Vec2Model(tf.Wav2Vec2Config(**common))
    elif kind == "wav2vec2-stable":  # the large models' layout: layer norm inside each layer, and at the end
        cfg: Any = tf.Wav2Vec2Config(**common, do_stable_layer_norm=True, feat_extract_norm="layer")
        model = tf.Wav2Vec2Model(cfg)
    elif kind == "hubert":
        model = tf.HubertModel(tf.HubertConfig(**common))
    elif kind == "wavlm":
        model = tf.WavLMModel(tf.WavLMConfig(**common, num_buckets=16, max_bucket_distance=64))
    elif kind == "whisper":
        cfg = tf.WhisperConfig(
            d_model=HIDDEN,
            encoder_layers=LAYERS,
            encoder_attention_heads=2,
            encoder_ffn_dim=64,
            decoder_layers=1,
            decoder_attention_heads=2,
            decoder_ffn_dim=64,
            num_mel_bins=80,
            vocab_size=64,
            max_target_positions=16,
            pad_token_id=1,
            bos_token_id=2,
            eos_token_id=3,
            decoder_start_token_id=2,
        )
        model = tf.WhisperModel(cfg)
    else:
        raise ValueError(f"no tiny encoder of kind {kind!r}; one of {KINDS}")
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    return folder
