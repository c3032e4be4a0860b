"""Hugging Face ``transformers`` speech encoders (wav2vec 2.0, HuBERT, WavLM, data2vec-audio, the Whisper encoder).

:func:`load_hf_encoder` loads one from a local folder (``save_pretrained``: ``config.json`` and safetensors weights)
or a hub id, offline when ``HF_HUB_OFFLINE`` is set, never running code from the model's folder
(``trust_remote_code=False``) and never unpickling weights (``use_safetensors=True``). :class:`HFEncoder` gives the
hidden states of one stretch of audio, its frame geometry, its identity (hub id and commit, or a digest of a local
folder's config and weights) and, for partial fine-tuning, a trainable copy of its top layers
(:meth:`HFEncoder.top_layers`).
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from paraling.errors import ConfigError, DependencyError, FeatureError

__all__ = ["SUPPORTED_TYPES", "EncoderTop", "HFEncoder", "folder_digest", "load_hf_encoder"]

log = logging.getLogger(__name__)

#: ``config.json`` ``model_type`` values this loader knows how to run.
SUPPORTED_TYPES = ("wav2vec2", "hubert", "wavlm", "data2vec-audio", "whisper")
_WEIGHTS_SUFFIX = ".safetensors"
_DIGESTS: dict[tuple[str, int, int], str] = {}


def folder_digest(folder: Path) -> str:
    """A digest of a model folder's ``config.json`` and safetensors weights (names and bytes), memoised per process
    by the files' sizes and modification times."""
    named = ("config.json", "preprocessor_config.json")
    files = sorted(p for p in folder.iterdir() if p.name in named or p.name.endswith(_WEIGHTS_SUFFIX))
    sig = (str(folder.resolve()), sum(p.stat().st_size for p in files), max(p.stat().st_mtime_ns for p in files))
    if sig not in _DIGESTS:
        h = hashlib.blake2b(digest_size=12)
        for p in files:
            h.update(p.name.encode())
            with open(p, "rb") as fh:
                while block := fh.read(1 << 22):
                    h.update(block)
        _DIGESTS[sig] = h.hexdigest()
    return _DIGESTS[sig]


def _offline_help(model: str) -> str:
    name = model.rstrip("/").rsplit("/", 1)[-1]
    return (
        f"On a machine with internet run `huggingface-cli download {model} --local-dir {name}` (or "
        f"huggingface_hub.snapshot_download), copy the folder here and set features.model=/path/to/{name}"
    )


def _read_config(model: str, revision: str | None) -> tuple[Any, str]:
    """The encoder's ``transformers`` config and its identity (folder digest, or hub id @ commit)."""
    try:
        from transformers import AutoConfig
    except ImportError as exc:
        raise DependencyError("features=ssl needs transformers: pip install 'paraling[ssl]'") from exc
    local = Path(model).expanduser()
    if local.is_dir():
        if not (local / "config.json").is_file():
            raise ConfigError(
                f"features.model={model}: the folder holds no speech encoder (no config.json); point it at a folder "
                "written by save_pretrained (config.json + model.safetensors) or at a hub id"
            )
        if not any(p.name.endswith(_WEIGHTS_SUFFIX) for p in local.iterdir()):
            raise ConfigError(
                f"features.model={model}: no safetensors weights in the folder (paraling loads no pickled weights); "
                "convert them: model.save_pretrained(folder, safe_serialization=True)"
            )
        config = AutoConfig.from_pretrained(str(local), trust_remote_code=False)
        return config, f"folder:{folder_digest(local)}"
    if local.exists() or model.startswith((".", "/", "~")):
        raise ConfigError(f"features.model={model}: not a folder (a speech encoder is a folder or a hub id)")
    try:
        config = AutoConfig.from_pretrained(model, revision=revision, trust_remote_code=False)
    except OSError as exc:
        offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
        if offline:
            why = "not in the local Hugging Face cache, and HF_HUB_OFFLINE is set"
        else:
            why = f"the Hugging Face hub did not give it ({' '.join(str(exc).split())[:160]})"
        raise ConfigError(f"features.model={model}: not a folder here; {why}. " + _offline_help(model)) from None
    commit = getattr(config, "_commit_hash", None) or revision or "main"
    return config, f"hub:{model}@{commit}"


def _check_type(model: str, config: Any) -> str:
    kind = str(getattr(config, "model_type", ""))
    if kind not in SUPPORTED_TYPES:
        raise ConfigError(
            f"features.model={model}: holds a {kind or 'unknown'} model, not a speech encoder paraling can run "
            f"(supported: {', '.join(SUPPORTED_TYPES)})"
        )
    return kind


def _conv_geometry(config: Any) -> tuple[int, int]:
    """``(hop, receptive field)`` in samples of a wav2vec2-style convolutional feature encoder."""
    hop, field = 1, 1
    for k, s in zip(config.conv_kernel, config.conv_stride, strict=True):
        field += (int(k) - 1) * hop
        hop *= int(s)
    return hop, field


@dataclass
class _Geometry:
    hop: int  # samples per output frame
    field: int  # samples the first frame needs
    max_samples: int | None  # the longest input one call takes (Whisper: 30 s)


class HFEncoder:
    """A loaded ``transformers`` speech encoder.

    Args:
        model: The hub id or folder (for messages).
        config: Its ``transformers`` config.
        network: The encoder module (``Wav2Vec2Model``-like, or a ``WhisperEncoder``).
        identity: ``folder:<digest>`` or ``hub:<id>@<commit>``.
        preprocess: The input preparation (``normalize`` for wav2vec2-style models; a Whisper feature extractor).
    """

    def __init__(self, model: str, config: Any, network: nn.Module, identity: str, preprocess: Any) -> None:
        self.model, self.config, self.network, self.identity = model, config, network, identity
        self.kind = str(config.model_type)
        self.preprocess = preprocess
        if self.kind == "whisper":
            self.geometry = _Geometry(320, 400, 30 * 16000)
            self.n_layers = int(config.encoder_layers)
            self.dim = int(config.d_model)
        else:
            hop, field = _conv_geometry(config)
            self.geometry = _Geometry(hop, field, None)
            self.n_layers = int(config.num_hidden_layers)
            self.dim = int(config.hidden_size)

    @property
    def n_states(self) -> int:
        """Hidden states per frame: the input of the first layer and the output of each layer."""
        return self.n_layers + 1

    def frames(self, n_samples: int) -> int:
        """Output frames for ``n_samples`` of audio (at least :attr:`geometry.field <_Geometry.field>`)."""
        g = self.geometry
        if self.kind == "whisper":
            return max(1, -(-n_samples // g.hop))
        return (n_samples - g.field) // g.hop + 1

    def to(self, device: torch.device) -> HFEncoder:
        """Move the network (once)."""
        self.network.to(device)
        return self

    @torch.no_grad()
    def norm_stats(self, wave: np.ndarray) -> tuple[float, float]:
        """``(shift, scale)`` with which ``(wave - shift) * scale`` is the recording as the encoder was trained to
        see it: zero mean and unit variance where its feature extractor normalises (``do_normalize``), ``(0, 1)``
        otherwise. Taken over the whole recording, so every chunk of it sees the same scale."""
        if self.preprocess != "normalize":
            return 0.0, 1.0
        mean = float(np.mean(wave, dtype=np.float64))
        return mean, 1.0 / float(np.sqrt(_var(wave, mean) + 1e-7))

    def normalize(self, wave: np.ndarray) -> np.ndarray:
        """``wave`` normalised by :meth:`norm_stats`, float32."""
        shift, scale = self.norm_stats(wave)
        return ((np.asarray(wave) - shift) * scale).astype(np.float32, copy=False)

    def hidden_states(self, wave: np.ndarray, device: torch.device, dtype: torch.dtype | None) -> torch.Tensor:
        """``(n_states, frames, dim)`` float32 hidden states of ``wave`` (16 kHz, at least one frame long, already
        normalised by :meth:`normalize`)."""
        n = self.frames(len(wave))
        if self.kind == "whisper":
            feats = self.preprocess(wave, sampling_rate=16000, return_tensors="pt").input_features
            inputs = {"input_features": feats.to(device)}
        else:
            x = torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32))
            inputs = {"input_values": x[None].to(device)}
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            out = self.network(**inputs, output_hidden_states=True)
        states = torch.stack([h[0, :n].float() for h in out.hidden_states])
        if states.shape[1] < n:
            raise FeatureError(f"{self.model}: the encoder gave {states.shape[1]} frames where {n} were expected")
        return states

    def top_layers(self, k: int) -> EncoderTop:
        """A trainable copy of the encoder's top ``k`` layers, whose input is hidden state ``n_states - 1 - k`` and
        whose output is the top hidden state (Whisper's final layer norm included, as in its hidden states).

        Raises:
            ConfigError: ``k`` out of range, or an encoder whose layers share state (WavLM's position bias).
        """
        if not 1 <= k <= self.n_layers:
            raise ConfigError(f"model.finetune_layers must lie in 1..{self.n_layers} for {self.model}, got {k}")
        if self.kind == "wavlm":
            raise ConfigError(
                f"{self.model}: fine-tuning the top layers of a WavLM encoder is not supported (its layers share a "
                "relative position bias computed in the first one); use the frozen weighted sum (finetune_layers=0)"
            )
        net: Any = self.network
        layers = net.layers if self.kind == "whisper" else net.encoder.layers
        norm = net.layer_norm if self.kind == "whisper" else None  # Whisper's last hidden state is normed
        return EncoderTop(copy.deepcopy(nn.ModuleList(layers[-k:])), copy.deepcopy(norm) if norm is not None else None)


def _var(wave: np.ndarray, mean: float, block: int = 1 << 20) -> float:
    """Variance of a long recording about ``mean``, a block at a time (no full-length float64 copy)."""
    total = 0.0
    for i in range(0, len(wave), block):
        total += float(np.sum(np.square(wave[i : i + block] - mean, dtype=np.float64)))
    return total / max(len(wave), 1)


class EncoderTop(nn.Module):
    """The top layers of an encoder, run on a window of cached hidden states ``(batch, frames, dim)``.

    Attention then spans the window, not the whole recording: the windows are the context the layers are trained in.
    """

    def __init__(self, layers: nn.ModuleList, norm: nn.Module | None) -> None:
        super().__init__()
        self.layers = layers
        self.norm = norm if norm is not None else nn.Identity()

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """``(batch, frames, dim)`` hidden states after the copied layers."""
        for layer in self.layers:
            out = layer(h, attention_mask=None)
            h = out[0] if isinstance(out, tuple) else out
        return self.norm(h)


def _preprocessor_settings(model: str, revision: str | None) -> dict[str, Any]:
    """The encoder's ``preprocessor_config.json`` (a folder's, or the hub's through its cache); ``{}`` without one."""
    local = Path(model).expanduser()
    if local.is_dir():
        file = local / "preprocessor_config.json"
        return json.loads(file.read_text(encoding="utf-8")) if file.is_file() else {}
    try:
        from huggingface_hub import hf_hub_download

        path = hf_hub_download(model, "preprocessor_config.json", revision=revision)
    except (OSError, ValueError):  # the hub's "not there" errors: the config's defaults then apply
        return {}
    return dict(json.loads(Path(path).read_text(encoding="utf-8")))


def _preprocess(model: str, kind: str, config: Any, revision: str | None = None) -> Any:
    settings = _preprocessor_settings(model, revision)
    if kind == "whisper":
        from transformers import WhisperFeatureExtractor

        return WhisperFeatureExtractor(feature_size=int(config.num_mel_bins), sampling_rate=16000)
    normalize = settings.get("do_normalize", getattr(config, "feat_extract_norm", "group") == "layer")
    return "normalize" if normalize else None


def load_hf_encoder(model: str, revision: str | None = None) -> HFEncoder:
    """Load the speech encoder at ``model`` (folder or hub id) in evaluation mode on the CPU.

    Raises:
        ConfigError: No encoder there, an unsupported model type, or a hub id that cannot be reached (the message
            says how to bring the folder here).
        DependencyError: ``transformers`` is not installed.
    """
    config, identity = _read_config(model, revision)
    kind = _check_type(model, config)
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    where = str(Path(model).expanduser()) if Path(model).expanduser().is_dir() else model
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # one bar per load would fill the logs of a sweep's trials
    try:
        network = AutoModel.from_pretrained(
            where, revision=revision, trust_remote_code=False, use_safetensors=True, low_cpu_mem_usage=True
        )
    except (OSError, ValueError) as exc:
        detail = " ".join(str(exc).split())[:300]
        raise ConfigError(f"features.model={model}: cannot load its weights ({detail})") from None
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    if kind == "whisper":
        network = network.get_encoder()
    network.eval()
    for p in network.parameters():
        p.requires_grad_(False)
    log.info("speech encoder %s (%s, %s)", model, kind, identity)
    return HFEncoder(model, config, network, identity, _preprocess(model, kind, config, revision))
