"""The fit loop: schedules, learning on a separable problem, checkpoint resume, NaN detection, pruning hook."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from paraling.config import TrainerConfig
from paraling.data.windows import WindowBank
from paraling.errors import Pruned, TrainingError
from paraling.models.cnn import WindowCNN
from paraling.training.loop import EvalSet, FitOptions, fit, linear_schedule, predict_windows


def test_linear_schedule() -> None:
    s = linear_schedule(0.02, 0.0001, 5)
    assert s[0] == 0.02 and s[-1] == pytest.approx(0.0001) and np.all(np.diff(s) < 0)
    assert linear_schedule(0.9, 0.999, 1).tolist() == [0.9]


def _problem(n_utts: int = 12, frames: int = 30) -> tuple[WindowBank, np.ndarray]:
    rng = np.random.default_rng(0)
    y = np.arange(n_utts) % 2
    feats = [
        rng.normal(size=(frames, 8)).astype(np.float32) + (2.0 * y[i] - 1.0) * np.linspace(-1, 1, 8)
        for i in range(n_utts)
    ]
    return WindowBank(feats, [f.sum(1) for f in feats], 5, 2, normalize="none"), y


def _sets(bank: WindowBank, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, EvalSet]:
    train_mask = np.arange(bank.n_utts) < 8
    tr = bank.windows_of(train_mask)
    va = bank.windows_of(~train_mask)
    local = bank.utt[va].numpy() - 8
    return (
        tr,
        torch.from_numpy(y[bank.utt[tr].numpy()]),
        EvalSet(va, torch.from_numpy(y[bank.utt[va].numpy()]), local, 4),
    )


def _cfg(**kw: object) -> object:
    return OmegaConf.structured(TrainerConfig(epochs=4, batch_size=16, channels_last=False, **kw))


def _model() -> WindowCNN:
    torch.manual_seed(0)
    return WindowCNN(8, 5, 2, [4, 4], [3, 2], [0.0, 0.0], [16], dropout_fc=0.0)


def test_learns_separable_problem_and_reports() -> None:
    bank, y = _problem()
    tr, ytr, val = _sets(bank, y)
    seen: list[tuple[int, int, dict]] = []

    class R:
        def on_epoch_end(self, fold: int, epoch: int, metrics: dict) -> None:
            seen.append((fold, epoch, metrics))

    res = fit(_model(), bank, tr, ytr, val, _cfg(), FitOptions(reporter=R(), fold=3))
    assert [e for _, e, _ in seen] == [0, 1, 2, 3] and all(f == 3 for f, _, _ in seen)
    assert res.best_val_uar == 1.0
    assert seen[0][2]["lr"] == 0.02 and seen[-1][2]["momentum"] == pytest.approx(0.999)
    assert seen[-1][2]["train_loss"] < seen[0][2]["train_loss"]


def test_checkpoint_resume_continues(tmp_path: Path) -> None:
    bank, y = _problem()
    tr, ytr, val = _sets(bank, y)
    ck = tmp_path / "f0.pt"
    epochs: list[int] = []

    class Stop:
        def on_epoch_end(self, fold: int, epoch: int, metrics: dict) -> None:
            epochs.append(epoch)
            if epoch == 1:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(_model(), bank, tr, ytr, val, _cfg(), FitOptions(reporter=Stop(), checkpoint=ck))
    assert ck.exists()
    epochs.clear()

    class Rec:
        def on_epoch_end(self, fold: int, epoch: int, metrics: dict) -> None:
            epochs.append(epoch)

    res = fit(_model(), bank, tr, ytr, val, _cfg(), FitOptions(reporter=Rec(), checkpoint=ck))
    # the checkpoint is written after the reporter has the epoch's metrics: an interrupted epoch 1 is redone, so a
    # kill can duplicate an epoch's metrics but never lose them
    assert epochs == [1, 2, 3] and len(res.history) == 4


def test_nan_loss_raises_training_error() -> None:
    bank, y = _problem()
    tr, ytr, val = _sets(bank, y)
    bank.data[:] = float("nan")
    with pytest.raises(TrainingError, match="lr_start"):
        fit(_model(), bank, tr, ytr, val, _cfg())


def test_pruned_propagates() -> None:
    bank, y = _problem()
    tr, ytr, val = _sets(bank, y)

    class P:
        def on_epoch_end(self, fold: int, epoch: int, metrics: dict) -> None:
            raise Pruned("pruned at epoch 0")

    with pytest.raises(Pruned):
        fit(_model(), bank, tr, ytr, val, _cfg(), FitOptions(reporter=P()))


def test_predict_windows_proba_and_embeddings() -> None:
    bank, _ = _problem()
    m = _model()
    p, emb = predict_windows(m, bank, torch.arange(bank.n_windows), batch_size=7, embeddings=True)
    assert p.shape == (bank.n_windows, 2) and np.allclose(p.sum(1), 1, atol=1e-5)
    assert emb is not None and emb.shape == (bank.n_windows, 16)


def test_bf16_channels_last_path_runs() -> None:
    bank, y = _problem()
    tr, ytr, val = _sets(bank, y)
    res = fit(
        _model(),
        bank,
        tr,
        ytr,
        val,
        OmegaConf.structured(TrainerConfig(epochs=2, batch_size=16, channels_last=True, precision="bf16")),
    )
    assert len(res.history) == 2 and np.isfinite(res.history[-1]["train_loss"])


def test_native_switch_reaches_the_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """trainer.native=false trains on torch ops only; true goes through the native first block."""
    from paraling.ops import block, build

    if build.load_library() is None:
        pytest.skip("no C compiler: the native kernels cannot be built here")
    calls = []

    def spy(*args: object, **kwargs: object) -> bool:
        calls.append(1)
        return False  # "does not apply": the block goes on to the next kernel

    monkeypatch.setattr(block, "first_block_applies", spy)
    bank, y = _problem()
    idx, yw, _ = _sets(bank, y)
    model = _model()
    fit(model, bank, idx, yw, None, _cfg(native=False))
    assert not calls and model.kernels == "reference"
    fit(model, bank, idx, yw, None, _cfg(native=True))
    assert calls and model.kernels == "auto"


@pytest.mark.parametrize(
    ("flags", "kind"),
    [
        ({"avx512f", "amx_tile", "amx_bf16", "avx512_bf16"}, "amx"),
        ({"avx512f", "avx512_bf16"}, "avx512_bf16"),
        ({"avx2", "fma"}, "none"),
        (set(), "none"),
    ],
)
def test_bf16_hardware_reads_the_cpu_flags(monkeypatch: pytest.MonkeyPatch, flags: set[str], kind: str) -> None:
    from paraling import device
    from paraling.ops import cpu

    monkeypatch.setattr(cpu, "cpu_flags", lambda: frozenset(flags))
    assert cpu.bf16_hardware() == kind
    assert device.cpu_has_native_bf16() is (kind != "none")
