"""A pre-trained speaker encoder that comes with a pip install: Resemblyzer's GE2E voice encoder.

The ``Resemblyzer`` wheel ships its trained weights (``resemblyzer/pretrained.pt``, 17 MB: a 3-layer LSTM over
40-band mel frames, trained with the generalised end-to-end speaker-verification loss on LibriSpeech, VoxCeleb 1 and
2; Wan et al., ICASSP 2018). paraling runs the network itself (:class:`GE2ENetwork`, torch only) and reads only the
weights, as tensors (``torch.load(weights_only=True)``): ``pip install --no-deps resemblyzer`` is all it needs (the
package's own code and its librosa / webrtcvad dependencies are never imported).

Its hidden states per 10-ms frame are the outputs of the three LSTM layers and of the projection (``ReLU(linear)``,
the layer whose utterance mean Resemblyzer L2-normalises into its speaker embedding): four states of 256 values. The
LSTM carries its state from one chunk to the next, so chunking changes nothing.
"""

from __future__ import annotations

import hashlib
from importlib import metadata
from pathlib import Path

import numpy as np
import torch
import torchaudio
from torch import nn

from paraling.device import load_state
from paraling.errors import ConfigError, DependencyError

__all__ = ["GE2EEncoder", "GE2ENetwork", "installed_weights"]

_HIDDEN, _MELS, _LAYERS = 256, 40, 3


def installed_weights() -> Path:
    """The weights file the installed ``Resemblyzer`` distribution carries (the package is not imported).

    Raises:
        DependencyError: Resemblyzer is not installed, or its wheel came without the weights.
    """
    try:
        dist = metadata.distribution("Resemblyzer")
    except metadata.PackageNotFoundError:
        raise DependencyError(
            "features.backend=resemblyzer needs the Resemblyzer weights: pip install --no-deps resemblyzer"
        ) from None
    path = Path(str(dist.locate_file("resemblyzer/pretrained.pt")))
    if not path.is_file():
        raise DependencyError(
            f"the installed Resemblyzer has no {path.name}; reinstall: pip install --no-deps resemblyzer"
        )
    return path


class GE2ENetwork(nn.Module):
    """The GE2E voice encoder: log-free mel power frames ``(batch, frames, 40)`` → per-frame hidden states.

    Its three LSTM layers are separate modules so that each layer's output is available.
    """

    def __init__(self) -> None:
        super().__init__()
        self.lstms = nn.ModuleList(
            [nn.LSTM(_MELS if i == 0 else _HIDDEN, _HIDDEN, batch_first=True) for i in range(_LAYERS)]
        )
        self.linear = nn.Linear(_HIDDEN, _HIDDEN)

    def load_resemblyzer(self, path: Path) -> None:
        """Load Resemblyzer's checkpoint (``model_state``: one 3-layer ``lstm`` and ``linear``), as tensors only.

        Raises:
            ConfigError: The file is not such a checkpoint.
        """
        try:
            state = load_state(Path(path))["model_state"]
            mine = {"linear.weight": state["linear.weight"], "linear.bias": state["linear.bias"]}
            for i in range(_LAYERS):
                for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                    mine[f"lstms.{i}.{name}_l0"] = state[f"lstm.{name}_l{i}"]
            self.load_state_dict(mine)
        except (KeyError, RuntimeError, TypeError, OSError) as exc:
            raise ConfigError(f"{path}: not a Resemblyzer voice-encoder checkpoint ({exc})") from None

    def forward(
        self, mels: torch.Tensor, state: list[tuple[torch.Tensor, torch.Tensor] | None]
    ) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor] | None]]:
        """``(4, batch, frames, 256)`` states (three LSTM layers, the projection) and each LSTM's carried state."""
        outs, new_state = [], []
        h = mels
        for lstm, s in zip(self.lstms, state, strict=True):
            h, hc = lstm(h, s)
            outs.append(h)
            new_state.append(hc)
        outs.append(torch.relu(self.linear(h)))
        return torch.stack(outs), new_state


class GE2EEncoder:
    """The GE2E network with its front-end (volume normalisation to -30 dBFS, Slaney mel power at 25/10 ms).

    Args:
        weights: A Resemblyzer ``pretrained.pt``; ``None``: the installed package's.
    """

    kind = "ge2e"
    n_states = _LAYERS + 1
    dim = _HIDDEN
    hop = 160
    field = 400

    def __init__(self, weights: str | Path | None = None) -> None:
        path = Path(weights).expanduser() if weights else installed_weights()
        if not path.is_file():
            raise ConfigError(f"features.model={weights}: no such Resemblyzer weights file")
        self.model = str(path)
        self.network = GE2ENetwork()
        self.network.load_resemblyzer(path)
        self.network.eval()
        with open(path, "rb") as fh:
            self.identity = "resemblyzer:" + hashlib.blake2b(fh.read(), digest_size=12).hexdigest()
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=16000,
            n_fft=400,
            hop_length=self.hop,
            n_mels=_MELS,
            norm="slaney",
            mel_scale="slaney",
            center=True,
            pad_mode="reflect",
            power=2.0,
        )

    def frames(self, n_samples: int) -> int:
        """Output frames for ``n_samples`` (centred frames: one per hop, plus one)."""
        return n_samples // self.hop + 1

    def to(self, device: torch.device) -> GE2EEncoder:
        """Move the network and the mel transform (once)."""
        self.network.to(device)
        self.mel.to(device)
        return self

    @torch.no_grad()
    def encode(self, wave: np.ndarray, device: torch.device, chunk_frames: int) -> torch.Tensor:
        """``(4, frames, 256)`` float32 states of ``wave``, the LSTMs run ``chunk_frames`` at a time (exact)."""
        if len(wave) < self.field:
            wave = np.pad(wave, (0, self.field - len(wave)))
        x = torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32)).to(device)
        rms = torch.sqrt(torch.mean(x.double() ** 2)).float().clamp_min(1e-8)
        x = x * (10 ** (-30 / 20) / rms)  # Resemblyzer's normalize_volume(-30 dBFS)
        mels = self.mel(x).T[None]  # (1, frames, 40)
        state: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * _LAYERS
        parts = []
        for s in range(0, mels.shape[1], chunk_frames):
            out, state = self.network(mels[:, s : s + chunk_frames], state)
            parts.append(out[:, 0].float().cpu())
        return torch.cat(parts, dim=1)
