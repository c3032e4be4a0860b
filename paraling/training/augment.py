"""Augmentation of training batches on the device: SpecAugment-style masking and mixup of windows.

Neither is in Milde & Biemann (2015); both are switches a sweep can search (``trainer.spec_augment.*``,
``trainer.mixup``). They act inside the training step only, on the batch of windows just gathered from the bank, so
validation windows, out-of-fold scoring and prediction never see them.

- **Masking** (Park et al. 2019): ``freq_masks`` masks per window, each zeroing a band range of random width in
  ``[0, freq_width)`` at a random position (:class:`torchaudio.transforms.FrequencyMasking` with ``iid_masks``: every
  window draws its own), and ``time_masks`` masks of up to ``time_width`` frames (``TimeMasking``). Windows are
  mean-normalised per utterance and band, so a zero is the band's mean.
- **Mixup** (Zhang et al. 2018): window ``i`` of the batch becomes ``lam_i * x_i + (1 - lam_i) * x_j`` with ``j``
  the window at the mirrored position of the (already shuffled) batch and ``lam_i ~ Beta(mixup, mixup)`` drawn per
  window; the loss mixes the two labels' cross-entropies with the same weights.

Every draw uses torch's generator of the batch's device, which :func:`~paraling.pipeline.cv.seed_everything` seeds
and checkpoints carry: the same seed gives the same masks and weights. Every draw also happens *on* that device
with no value read back to the host, so a CUDA graph can record the step: the mixup weight is ``G1 / (G1 + G2)``
with ``G1, G2 ~ Gamma(mixup, 1)`` (a ``Beta(mixup, mixup)`` draw) from concentration buffers that move with the
module, without argument validation (which reads its checks back to the host).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["BatchAugment"]


class BatchAugment(nn.Module):
    """Masking and/or mixup of a training batch ``(B, 1, n_mels, width)``.

    Args:
        freq_masks: Masks per window along the mel bands.
        freq_width: Maximum width of a band mask.
        time_masks: Masks per window along the frames.
        time_width: Maximum width of a frame mask.
        mixup: Beta concentration of the mixup weights (0: no mixup).
    """

    concentration: torch.Tensor
    rate: torch.Tensor

    def __init__(
        self, freq_masks: int = 0, freq_width: int = 8, time_masks: int = 0, time_width: int = 2, mixup: float = 0.0
    ) -> None:
        super().__init__()
        from torchaudio.transforms import FrequencyMasking, TimeMasking

        self.masks = nn.ModuleList(
            [FrequencyMasking(freq_width, iid_masks=True) for _ in range(freq_masks)]
            + [TimeMasking(time_width, iid_masks=True) for _ in range(time_masks)]
        )
        self.mixup = float(mixup)
        self.register_buffer("concentration", torch.tensor(self.mixup if self.mixup > 0 else 1.0), persistent=False)
        self.register_buffer("rate", torch.tensor(1.0), persistent=False)

    @classmethod
    def from_config(cls, cfg: Any) -> BatchAugment | None:
        """The augmentation a ``trainer`` config asks for, or ``None`` when every switch is off."""
        sa = getattr(cfg, "spec_augment", None)
        freq = int(sa.freq_masks) if sa is not None else 0
        time = int(sa.time_masks) if sa is not None else 0
        mixup = float(getattr(cfg, "mixup", 0.0) or 0.0)
        if not (freq or time or mixup):
            return None
        return cls(freq, int(sa.freq_width), time, int(sa.time_width), mixup)  # type: ignore[union-attr]

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The augmented batch and the per-window mixup weights (``None`` without mixup)."""
        for mask in self.masks:
            x = mask(x)
        if not self.mixup:
            return x, None
        lam = self.mixup_weights(x.shape[0], x.device)
        w = lam.view(-1, *([1] * (x.dim() - 1))).to(x.dtype)
        return w * x + (1 - w) * x.flip(0), lam

    def mixup_weights(self, n: int, device: torch.device) -> torch.Tensor:
        """``(n,)`` draws of ``Beta(mixup, mixup)`` on ``device``, with no host round trip (graph-capturable)."""
        if self.concentration.device != device:
            self.to(device)
        gamma = torch.distributions.Gamma(
            self.concentration.expand(2, n), self.rate.expand(2, n), validate_args=False
        ).sample()
        return gamma[0] / (gamma[0] + gamma[1]).clamp_min(torch.finfo(gamma.dtype).tiny)

    @staticmethod
    def loss(logits: torch.Tensor, y: torch.Tensor, lam: torch.Tensor | None) -> torch.Tensor:
        """Cross-entropy; with mixup weights, the weighted mean of both labels' cross-entropies."""
        if lam is None:
            return nn.functional.cross_entropy(logits, y)
        ce = nn.functional.cross_entropy
        return (lam * ce(logits, y, reduction="none") + (1 - lam) * ce(logits, y.flip(0), reduction="none")).mean()
