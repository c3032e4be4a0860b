"""``features=ssl``: the hidden states of a pre-trained speech encoder as the frames every model reads.

The extractor returns, per encoder frame (20 ms for wav2vec 2.0, HuBERT, WavLM and Whisper; 10 ms for the GE2E
speaker encoder), the hidden states of the chosen ``features.layers`` side by side: ``(frames, n_layers * dim)``.
Index 0 is the input of the first transformer layer, index ``i`` the output of layer ``i`` (SUPERB's convention);
``all`` keeps every one, so a head can learn its weighted sum (:mod:`paraling.models.ssl_head`).

Backends (``features.backend``): ``transformers`` (:mod:`paraling.features.hf_encoder`: a hub id or a local folder in
``features.model``, pinned by ``features.revision``) and ``resemblyzer`` (:mod:`paraling.features.ge2e`: the speaker
encoder whose weights come with ``pip install resemblyzer``).

Long recordings are encoded ``features.chunk_seconds`` at a time, each chunk with ``features.context_seconds`` of
audio on both sides that is encoded but not kept, so memory stays bounded by the chunk whatever the recording's
length (the LSTM of GE2E carries its state instead). A recording shorter than the encoder's first frame is padded to
one frame (``windows.short_policy`` then pads or skips it like any short utterance). The encoder runs on
``features.device`` (``auto``: the GPU when there is one) in bf16 (fp16 before Ampere) on a GPU, fp32 on the CPU, and
is loaded on the first extraction: building the extractor (for a cache key, a digest) loads only its config.

The cache key holds the encoder's identity (a local folder's digest of config and weights, or hub id @ commit), the
layers, the precision and the chunking, so a sweep over heads and layers extracts each recording once per encoder.
"""

from __future__ import annotations

import functools
import json
import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from paraling.device import to_numpy
from paraling.errors import ConfigError

__all__ = ["BACKENDS", "SslExtractor", "select_layers"]

log = logging.getLogger(__name__)

BACKENDS = ("transformers", "resemblyzer")


def select_layers(layers: Any, n_states: int, model: str) -> list[int]:
    """Hidden-state indices (``0 .. n_states - 1``) that ``features.layers`` names (``all``, an index or a list;
    negative indices count from the top).

    Raises:
        ConfigError: An index out of range (naming the valid range), or a value that is no index.
    """
    if isinstance(layers, str) and layers == "all":
        return list(range(n_states))
    items = [layers] if isinstance(layers, int | str) else list(layers)
    out = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, int):
            raise ConfigError(f"features.layers must be 'all', an index or a list of indices, not {layers!r}")
        if not -n_states <= item < n_states:
            raise ConfigError(
                f"features.layers={item}: {model} has hidden states 0..{n_states - 1} (0: the input of the first "
                f"layer; or -{n_states}..-1 from the top)"
            )
        out.append(item % n_states)
    if not out or len(set(out)) != len(out):
        raise ConfigError(f"features.layers={layers!r}: name each hidden state at most once, and at least one")
    return out


def _resolve_device(name: str) -> torch.device:
    from paraling.device import resolve_device

    return resolve_device(name)


def _autocast_dtype(device: torch.device, precision: str) -> torch.dtype | None:
    """bf16 where the GPU computes it in hardware, fp16 on older GPUs (``auto``), fp32 on the CPU."""
    if device.type != "cuda" or precision == "fp32":
        return None
    if precision == "fp16":
        return torch.float16
    from paraling.device import cuda_has_native_bf16

    return torch.bfloat16 if cuda_has_native_bf16(device) else torch.float16


@dataclass
class SslExtractor:
    """Hidden states of a speech encoder (see the module docstring); built by :meth:`from_config`.

    Attributes:
        backend: ``transformers`` or ``resemblyzer``.
        model: Hub id or folder (``transformers``); a weights file or empty for the installed one (``resemblyzer``).
        revision: Hub revision (branch, tag or commit).
        layers: ``all``, an index or a list of indices.
        chunk_seconds: Audio encoded per call.
        context_seconds: Audio on each side of a chunk encoded for context and dropped.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        precision: ``auto`` (bf16/fp16 on a GPU), ``fp32`` or ``fp16``.
        encoder_id: The identity a trained model recorded: a different encoder at ``model`` is refused.
        calls: Recordings encoded by this extractor (cache misses; what the caching tests count).
    """

    backend: str = "transformers"
    model: str = ""
    revision: str | None = None
    layers: Any = "all"
    chunk_seconds: float = 20.0
    context_seconds: float = 1.0
    device: str = "auto"
    precision: str = "auto"
    encoder_id: str | None = None
    sample_rate: int = 16000
    calls: int = 0
    _encoder: Any = field(default=None, repr=False)
    _config: Any = field(default=None, repr=False)
    _key_memo: Any = field(default=None, repr=False)

    @classmethod
    def from_config(cls, cfg: Any) -> SslExtractor:
        """Build from a ``features`` node (``kind=ssl``); checks the settings, loads nothing.

        Raises:
            ConfigError: An unknown backend, no model for ``transformers``, or chunking that is not positive.
        """
        defaults = {k: f.default for k, f in cls.__dataclass_fields__.items()}

        def get(key: str) -> Any:  # the node's value, or this class's default
            return cfg.get(key, defaults[key]) if isinstance(cfg, dict) else getattr(cfg, key, defaults[key])

        backend = str(get("backend"))
        if backend not in BACKENDS:
            raise ConfigError(f"features.backend must be one of {list(BACKENDS)}, not {backend!r}")
        model = str(get("model") or "")
        if backend == "transformers" and not model:
            raise ConfigError(
                "features=ssl needs features.model: a Hugging Face hub id (e.g. microsoft/wavlm-base-plus) or a "
                "local folder written by save_pretrained"
            )
        chunk, context = float(get("chunk_seconds")), float(get("context_seconds"))
        if not (chunk > 0 and context >= 0 and chunk == chunk):
            raise ConfigError(f"features.chunk_seconds must be > 0 and context_seconds >= 0, got {chunk}, {context}")
        layers = get("layers")
        layers = list(layers) if not isinstance(layers, int | str) else layers
        if int(get("sample_rate")) != 16000:
            raise ConfigError("features.sample_rate must be 16000 for features=ssl (audio is resampled to it)")
        return cls(
            backend=backend,
            model=model,
            revision=get("revision"),
            layers=layers,
            chunk_seconds=chunk,
            context_seconds=context,
            device=str(get("device")),
            precision=str(get("precision")),
            encoder_id=get("encoder_id"),
        )

    # --- what the encoder is, without loading its weights ----------------------------------------------------

    def _geometry(self) -> tuple[int, int, str]:
        """``(n_states, dim, identity)`` from the encoder's config (the weights stay on disk)."""
        if self._config is None:
            if self.backend == "resemblyzer":
                self._config = self.encoder()
            else:
                from paraling.features.hf_encoder import _check_type, _read_config

                config, identity = _read_config(self.model, self.revision)
                kind = _check_type(self.model, config)
                n = int(config.encoder_layers if kind == "whisper" else config.num_hidden_layers) + 1
                dim = int(config.d_model if kind == "whisper" else config.hidden_size)
                self._config = (n, dim, identity)
        if not isinstance(self._config, tuple):
            enc = self._config
            self._config = (enc.n_states, enc.dim, enc.identity)
        n, dim, identity = self._config
        if self.encoder_id and identity != self.encoder_id:
            raise ConfigError(
                f"features.model={self.model or 'resemblyzer'}: this is encoder {identity}, but the model was "
                f"trained on {self.encoder_id}; put that encoder at {self.model or 'the same place'}"
            )
        return n, dim, identity

    @property
    def identity(self) -> str:
        """``folder:<digest>``, ``hub:<id>@<commit>`` or ``resemblyzer:<digest>``."""
        return self._geometry()[2]

    @property
    def n_states(self) -> int:
        """Hidden states the encoder gives: its layers + 1 (the first layer's input)."""
        return self._geometry()[0]

    @property
    def selected(self) -> list[int]:
        """The hidden-state indices kept."""
        n, _, _ = self._geometry()
        return select_layers(self.layers, n, self.model or "the encoder")

    @property
    def groups(self) -> int:
        """How many hidden states each frame holds side by side (a head weighs them)."""
        return len(self.selected)

    @property
    def n_features(self) -> int:
        """Values per frame: ``groups * dim``."""
        return self.groups * self._geometry()[1]

    @property
    def frame_shift_ms(self) -> float:
        """Milliseconds between frames."""
        return 10.0 if self.backend == "resemblyzer" else 20.0

    @property
    def frame_length_ms(self) -> float:
        """Milliseconds the first frame needs."""
        return 25.0

    @property
    def dtype_name(self) -> str:
        """The precision the encoder runs in here: ``bfloat16`` or ``float16`` on a GPU, ``float32`` otherwise (and
        always for the GE2E LSTM)."""
        return str(self._dtype() or torch.float32).removeprefix("torch.")

    def _dtype(self) -> torch.dtype | None:
        if self.backend == "resemblyzer":
            return None
        return _autocast_dtype(_resolve_device(self.device), self.precision)

    def key(self) -> str:
        """Cache identity: encoder, layers, precision, chunking and the ``transformers`` major version (its hidden
        states have changed between majors, e.g. the top state of stable-layer-norm models); computed once per
        setting (the feature store asks for it on every file)."""
        memo = (self.device, self.precision, str(self.layers), self.chunk_seconds, self.context_seconds)
        if self._key_memo is None or self._key_memo[0] != memo:
            self._key_memo = (memo, self._key())
        return self._key_memo[1]

    def _key(self) -> str:
        return json.dumps(
            {
                "kind": "ssl",
                "backend": self.backend,
                "encoder": self.identity,
                "layers": self.selected,
                "dtype": str(self._dtype() or torch.float32),
                "lib": _transformers_major() if self.backend == "transformers" else "",
                "chunk": self.chunk_seconds,
                "context": self.context_seconds,
            },
            sort_keys=True,
        )

    # --- extraction --------------------------------------------------------------------------------------------

    def encoder(self) -> Any:
        """The loaded encoder, on :attr:`device` (loaded on first use)."""
        if self._encoder is None:
            if self.backend == "resemblyzer":
                from paraling.features.ge2e import GE2EEncoder

                enc: Any = GE2EEncoder(self.model or None)
            else:
                from paraling.features.hf_encoder import load_hf_encoder

                enc = load_hf_encoder(self.model, self.revision)
            self._encoder = enc.to(_resolve_device(self.device))
        return self._encoder

    def extract(self, wave: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(features (frames, groups * dim), energy (frames,))`` float32 of a 16-kHz mono waveform."""
        enc = self.encoder()
        self._geometry()  # the identity check of a trained model's encoder
        self.calls += 1
        device = _resolve_device(self.device)
        if self.backend == "resemblyzer":
            states = enc.encode(wave, device, max(1, round(self.chunk_seconds * 100)))[self.selected]
            feats = to_numpy(states.permute(1, 0, 2).reshape(states.shape[1], -1))
            hop, field_ = enc.hop, enc.field
        else:
            args = (self.chunk_seconds, self.context_seconds, device, self.precision, self.selected)
            feats = _chunked(enc, wave, *args)
            hop, field_ = enc.geometry.hop, enc.geometry.field
        return feats.astype(np.float32, copy=False), _frame_energy(wave, feats.shape[0], hop, field_)


@functools.cache
def _transformers_major() -> str:
    from importlib import metadata

    try:
        return "transformers-" + metadata.version("transformers").split(".")[0]
    except metadata.PackageNotFoundError:
        return ""


def _chunked(
    enc: Any,
    wave: np.ndarray,
    chunk_s: float,
    context_s: float,
    device: torch.device,
    precision: str,
    selected: list[int],
) -> np.ndarray:
    """Hidden states ``selected`` of ``wave``, side by side per frame, encoded a chunk at a time with ``context_s``
    of audio either side (encoded, then dropped). Each chunk is normalised with the whole recording's statistics
    and written into the one output array, so the working memory is one chunk's whatever the recording's length."""
    g = enc.geometry
    if len(wave) < g.field:
        wave = np.pad(wave, (0, g.field - len(wave)))
    shift, scale = enc.norm_stats(wave)
    dtype = _autocast_dtype(device, precision)
    hop, n = g.hop, len(wave)
    ctx = round(context_s * 16000 / hop) * hop
    chunk_frames = max(1, int(chunk_s * 16000) // hop)
    if g.max_samples is not None:  # Whisper: one call sees at most 30 s, context included
        if 2 * ctx + g.field + hop > g.max_samples:
            raise ConfigError(
                f"features.context_seconds={context_s}: Whisper's encoder sees at most 30 s per call, context on "
                "both sides included; use at most 10"
            )
        chunk_frames = max(1, min(chunk_frames, (g.max_samples - 2 * ctx - g.field) // hop))
    total = enc.frames(n)
    out: np.ndarray | None = None
    frame = 0
    while frame < total:
        end = min(total, frame + chunk_frames)
        start_s = max(0, frame * hop - ctx) if total > chunk_frames else 0
        end_s = min(n, (end - 1) * hop + g.field + ctx) if total > chunk_frames else n
        piece = ((wave[start_s:end_s] - shift) * scale).astype(np.float32, copy=False)
        states = enc.hidden_states(piece, device, dtype)[selected]  # (groups, frames, dim)
        off = frame - start_s // hop
        block = states[:, off : off + end - frame].permute(1, 0, 2).reshape(end - frame, -1)
        if out is None:
            out = np.empty((total, block.shape[1]), dtype=np.float32)
        out[frame:end] = to_numpy(block)
        frame = end
    assert out is not None
    return out


def _frame_energy(wave: np.ndarray, frames: int, hop: int, field_: int, block: int = 256) -> np.ndarray:
    """Log mean-square energy of each frame's samples (``[t * hop, t * hop + field)``), for the weighted vote;
    ``block`` frames at a time, so no temporary grows with the recording."""
    out = np.empty(frames, dtype=np.float32)
    n = len(wave)
    for f0 in range(0, frames, block):
        f1 = min(frames, f0 + block)
        s0, s1 = min(f0 * hop, n), min((f1 - 1) * hop + field_, n)
        x = np.asarray(wave[s0:s1], dtype=np.float64)
        c = np.concatenate([[0.0], np.cumsum(x * x)])
        start = np.minimum(np.arange(f0, f1) * hop, n) - s0
        end = np.minimum(start + s0 + field_, n) - s0
        mean = (c[end] - c[start]) / np.maximum(end - start, 1)
        out[f0:f1] = np.log(mean + 1e-10)
    return out
