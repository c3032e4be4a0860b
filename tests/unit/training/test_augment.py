"""Masking and mixup of training batches: shapes, what is masked, seeded draws, and training windows only."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pytest
import torch
from omegaconf import DictConfig, OmegaConf

from paraling.config import SpecAugmentConfig, TrainerConfig
from paraling.config_checks import validate
from paraling.errors import ConfigError
from paraling.training.augment import BatchAugment
from paraling.training.loop import FitOptions, fit, predict_windows

from .test_training import _model, _problem, _sets


def test_masks_zero_whole_bands_and_frames_of_each_window() -> None:
    x = torch.ones(64, 1, 40, 11)
    torch.manual_seed(0)
    out, lam = BatchAugment(freq_masks=2, freq_width=6, time_masks=1, time_width=3)(x, torch.zeros(64))
    assert out.shape == x.shape and lam is None and x.min() == 1  # the input is left as it was
    zero = out[:, 0] == 0
    bands = zero.all(dim=2)  # (B, 40): bands zero at every frame
    frames = zero.all(dim=1)  # (B, 11): frames zero in every band
    assert torch.equal(zero, bands[:, :, None] | frames[:, None, :])  # nothing but whole bands and frames
    assert bands.sum(1).max() <= 2 * 5 and frames.sum(1).max() <= 2  # widths drawn in [0, width)
    assert bands.any(1).sum() > 32 and frames.any(1).sum() > 16  # most windows get masks ...
    assert len({tuple(b.nonzero().flatten().tolist()) for b in bands}) > 10  # ... each its own


def test_same_seed_same_draws() -> None:
    aug = BatchAugment(freq_masks=1, time_masks=1, mixup=0.4)
    x, y = torch.randn(32, 1, 40, 11), torch.arange(32) % 3
    draws = []
    for seed in (5, 5, 6):
        torch.manual_seed(seed)
        draws.append(aug(x, y))
    assert torch.equal(draws[0][0], draws[1][0]) and torch.equal(draws[0][1], draws[1][1])
    assert not torch.equal(draws[0][0], draws[2][0])


def test_mixup_mixes_windows_and_labels() -> None:
    x, y = torch.randn(16, 1, 8, 5), torch.arange(16) % 4
    torch.manual_seed(0)
    out, lam = BatchAugment(mixup=0.3)(x, y)
    assert lam is not None and lam.shape == (16,) and ((lam >= 0) & (lam <= 1)).all()
    w = lam.view(-1, 1, 1, 1)
    assert torch.allclose(out, w * x + (1 - w) * x.flip(0))
    logits = torch.randn(16, 4)
    ce = torch.nn.functional.cross_entropy
    want = (lam * ce(logits, y, reduction="none") + (1 - lam) * ce(logits, y.flip(0), reduction="none")).mean()
    assert torch.allclose(BatchAugment.loss(logits, y, lam), want)
    assert torch.allclose(BatchAugment.loss(logits, y, None), ce(logits, y))


def test_from_config_and_checks(compose_cfg: Callable[[Sequence[str]], DictConfig]) -> None:
    off = OmegaConf.structured(TrainerConfig())
    assert BatchAugment.from_config(off) is None
    on = OmegaConf.structured(TrainerConfig(spec_augment=SpecAugmentConfig(freq_masks=2), mixup=0.2))
    aug = BatchAugment.from_config(on)
    assert aug is not None and len(aug.masks) == 2 and aug.mixup == 0.2
    cfg = compose_cfg(["trainer.spec_augment.time_masks=2", "trainer.mixup=0.2"])
    assert BatchAugment.from_config(cfg.trainer) is not None
    with pytest.raises(ConfigError, match="trainer.spec_augment.time_width=11 would mask a whole window"):
        validate(compose_cfg(["trainer.spec_augment.time_width=11"]))
    with pytest.raises(ConfigError, match="trainer.mixup"):
        validate(compose_cfg(["trainer.mixup=-0.1"]))


def _cfg(**kw: object) -> object:
    sa = SpecAugmentConfig(freq_masks=1, freq_width=3, time_masks=1, time_width=2)
    return OmegaConf.structured(TrainerConfig(epochs=3, batch_size=16, channels_last=False, spec_augment=sa, **kw))


def test_fit_augments_training_windows_only_and_is_seeded(monkeypatch: pytest.MonkeyPatch) -> None:
    bank, y = _problem()
    tr, ytr, val = _sets(bank, y)
    seen: list[int] = []
    forward = BatchAugment.forward

    def spy(self: BatchAugment, x: torch.Tensor, yb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        seen.append(int(x.shape[0]))
        return forward(self, x, yb)

    monkeypatch.setattr(BatchAugment, "forward", spy)
    weights = []
    for _ in range(2):
        model = _model()
        torch.manual_seed(3)
        fit(model, bank, tr, ytr, val, _cfg(mixup=0.2), FitOptions())
        weights.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    n_train = int(tr.numel())
    assert sum(seen) == 2 * 3 * n_train  # every training window once per epoch; no validation window
    assert torch.equal(weights[0], weights[1])  # same seed, same masks and mixup weights
    seen.clear()
    proba, _ = predict_windows(model, bank, val.idx)
    assert seen == [] and np.allclose(proba.sum(1), 1, atol=1e-5)  # scoring is never augmented
    plain = _model()
    torch.manual_seed(3)
    fit(plain, bank, tr, ytr, val, OmegaConf.structured(TrainerConfig(epochs=3, batch_size=16, channels_last=False)))
    assert not torch.equal(weights[0], torch.cat([p.detach().flatten() for p in plain.parameters()]))


def test_mixup_draws_on_the_batch_device_without_reading_back() -> None:
    """A CUDA graph cannot record a host-to-device copy or a check read back to the host: on the meta device (no
    data at all) any such read raises, so a step that runs here has none."""
    aug = BatchAugment(freq_masks=1, time_masks=1, mixup=0.4).to("meta")
    x = torch.empty(16, 1, 40, 11, device="meta")
    y = torch.empty(16, dtype=torch.int64, device="meta")
    out, lam = aug(x, y)
    assert out.device.type == "meta" and lam is not None and lam.shape == (16,) and lam.device.type == "meta"


def test_mixup_weights_follow_beta() -> None:
    a = 0.4
    torch.manual_seed(0)
    lam = BatchAugment(mixup=a).mixup_weights(200_000, torch.device("cpu"))
    assert float(lam.min()) >= 0 and float(lam.max()) <= 1
    assert float(lam.mean()) == pytest.approx(0.5, abs=0.005)
    assert float(lam.var()) == pytest.approx(1 / (4 * (2 * a + 1)), rel=0.02)  # Var Beta(a, a)
