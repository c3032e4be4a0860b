"""``model=ssl_head`` over a tiny encoder: the weighted layer sum, pooling, and fine-tuning the encoder's top layers
(``transfer=encoder``) - only the unfrozen layers change, at their own rate."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from paraling.data.windows import WindowBank
from paraling.errors import ConfigError
from paraling.features.hf_encoder import load_hf_encoder
from paraling.features.ssl import SslExtractor
from paraling.models import build_window_model
from paraling.models.ssl_head import SslHead
from paraling.pipeline.encoder_transfer import resolve_encoder_transfer, top_k
from paraling.pipeline.experiment import run_experiment
from paraling.training.loop import FitOptions, fit

Encoder = Callable[[str], Path]
HEAD = {"kind": "ssl_head", "pooling": "attentive", "proj_dim": 16, "fc_sizes": [8], "dropout": 0.0, "layer_norm": True}


def _wave(seconds: float, seed: int = 0) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal(int(16000 * seconds))).astype(np.float32)


@pytest.mark.parametrize("pooling", ["attentive", "mean"])
def test_the_weighted_sum_picks_the_layers_the_weights_favour(pooling: str) -> None:
    torch.manual_seed(0)
    three = SslHead(3 * 8, 2, groups=3, pooling=pooling, proj_dim=6, fc_sizes=(5,), dropout=0.0).eval()
    one = SslHead(8, 2, groups=1, pooling=pooling, proj_dim=6, fc_sizes=(5,), dropout=0.0).eval()
    one.load_state_dict({k: v for k, v in three.state_dict().items() if k != "layer_weights"}, strict=False)
    with torch.no_grad():
        three.layer_weights.copy_(torch.tensor([-50.0, 50.0, -50.0]))  # softmax: all weight on hidden state 1
    x = torch.randn(4, 1, 3 * 8, 7)
    middle = x.reshape(4, 1, 3, 8, 7)[:, :, 1]
    assert three.features(x).shape == (4, 5) and three(x).shape == (4, 2)
    torch.testing.assert_close(three(x), one(middle))
    assert three.layer_names == ["layer_weights", "proj", "pool", "fc1", "out"] and three.lr_scales() == {}


@pytest.mark.parametrize("kind", ["wav2vec2", "wav2vec2-stable", "hubert", "whisper"])
def test_the_copied_top_layers_reproduce_the_encoders_top_state(tiny_encoder: Encoder, kind: str) -> None:
    enc = load_hf_encoder(str(tiny_encoder(kind)))
    wave = _wave(1.0)
    if kind == "whisper":  # its encoder sees 30 s of padding too; compare on what the window sees: the states
        wave = enc.normalize(wave)
    states = enc.hidden_states(enc.normalize(wave), torch.device("cpu"), None)
    top = enc.top_layers(1).eval()
    with torch.no_grad():
        out = top(states[-2][None])[0]
    tol = 0.1 if kind == "whisper" else 1e-4  # Whisper's attention spans its padded 30 s, the window does not
    assert float((out - states[-1]).abs().max()) < tol * float(states[-1].abs().max() + 1)


def test_wavlm_top_layers_are_refused_with_the_reason(tiny_encoder: Encoder) -> None:
    with pytest.raises(ConfigError, match="relative position bias"):
        load_hf_encoder(str(tiny_encoder("wavlm"))).top_layers(1)


def test_transfer_layers_are_the_encoders_top_layers() -> None:
    assert top_k(2, 12) == 2 and top_k("all", 12) == 12 and top_k([12, 11], 12) == 2
    for bad in (0, 13, [10, 12], "conv", [], True):
        with pytest.raises(ConfigError, match=r"top layers' numbers, e.g. \[11, 12\]"):
            top_k(bad, 12)


def test_transfer_encoder_sets_the_input_layer_and_the_heads_fine_tuning(tiny_encoder: Encoder, compose_cfg) -> None:
    folder = tiny_encoder("hubert")
    cfg = compose_cfg(["features=ssl", f"features.model={folder}", "model=ssl_head", "transfer=encoder"])
    out = resolve_encoder_transfer(cfg)
    assert (out.features.layers, out.model.finetune_layers, out.model.encoder_lr_scale) == (0, 2, 0.1)
    assert out.features.normalize == "none", "the copied layers read the hidden state unstandardised"
    assert cfg.features.layers == "all", "the composed config is left as it was"
    with pytest.raises(ConfigError, match="use model=ssl_head"):
        resolve_encoder_transfer(compose_cfg(["features=ssl", f"features.model={folder}", "transfer=encoder"]))
    with pytest.raises(ConfigError, match="model=svm cannot fine-tune"):  # refused, not ignored by the baselines
        run_experiment(compose_cfg(["features=ssl", f"features.model={folder}", "transfer=encoder", "model=svm"]))
    with pytest.raises(ConfigError, match="features=ssl"):
        resolve_encoder_transfer(compose_cfg(["model=ssl_head", "transfer=encoder"]))


def _fit_finetuned(folder: Path, freeze_epochs: int, lr_scale: float) -> tuple[SslHead, SslHead]:
    """A head with the top layer of ``folder``'s 2-layer encoder, before and after 2 epochs on random clips."""
    frontend = SslExtractor.from_config({"model": str(folder), "device": "cpu", "layers": 1})
    feats = [frontend.extract(_wave(0.6, seed))[0] for seed in range(8)]
    bank = WindowBank(feats, [np.zeros(len(f), np.float32) for f in feats], 10, 5, normalize="none")
    cfg = SimpleNamespace(**HEAD, finetune_layers=1, encoder_lr_scale=lr_scale)
    torch.manual_seed(0)
    model = build_window_model(cfg, frontend.n_features, 10, 2, frontend)
    before = copy.deepcopy(model)
    y = torch.tensor([i % 2 for i in range(8)])[bank.utt]
    trainer = SimpleNamespace(
        epochs=2, batch_size=8, lr_start=0.05, lr_end=0.05, momentum_start=0.9, momentum_end=0.9, nesterov=True,
        weight_decay=0.0, select="last", patience=0, precision="fp32", channels_last=False, capture="eager",
        optimizer="sgd", spec_augment=None, mixup=0.0, max_windows_per_epoch=None, eval_batch_size=64,
    )  # fmt: skip
    options = FitOptions(frozen=["encoder"], freeze_epochs=freeze_epochs, lr_scales=model.lr_scales())
    fit(model, bank, torch.arange(bank.n_windows), y, None, trainer, options)
    return before, model


def _moved(a: torch.nn.Module, b: torch.nn.Module) -> float:
    return max(float((p - q).detach().abs().max()) for p, q in zip(a.parameters(), b.parameters(), strict=True))


def test_fine_tuning_moves_the_unfrozen_encoder_layers_only_when_they_are_unfrozen(tiny_encoder: Encoder) -> None:
    folder = tiny_encoder("hubert")
    before, frozen = _fit_finetuned(folder, freeze_epochs=2, lr_scale=0.1)
    assert _moved(before.encoder, frozen.encoder) == 0.0 and _moved(before.proj, frozen.proj) > 0
    before, tuned = _fit_finetuned(folder, freeze_epochs=0, lr_scale=0.1)
    assert _moved(before.encoder, tuned.encoder) > 0 and _moved(before.proj, tuned.proj) > 0
    _, still = _fit_finetuned(folder, freeze_epochs=0, lr_scale=0.0)
    assert _moved(before.encoder, still.encoder) == 0.0, "encoder_lr_scale 0 keeps the encoder's weights"
    assert tuned.lr_scales() == {"encoder": 0.1} and tuned.layer_names[0] == "encoder"
    pristine = load_hf_encoder(str(folder)).top_layers(1)
    assert _moved(pristine, before.encoder) == 0.0, "the head starts from the pre-trained weights"
