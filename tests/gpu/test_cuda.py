"""The CUDA path on a real GPU: ``pytest -m gpu`` (``scripts/gpu-check.sh`` runs it). Skipped where CUDA is absent."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (run scripts/gpu-check.sh on one)"),
]


def _bank(n_utts: int = 12, frames: int = 120):
    from paraling.bench.common import synthetic_bank

    return synthetic_bank(n_utts, frames)


def test_bank_features_index_and_gather_live_on_the_gpu() -> None:
    bank, _ = _bank()
    idx = torch.arange(0, bank.n_windows, 3)
    expected = bank.gather(idx)
    bank.to("cuda")
    assert bank.data.is_cuda and bank.starts.is_cuda and bank.energy.is_cuda
    got = bank.gather(idx.cuda())
    assert got.is_cuda
    torch.testing.assert_close(got.cpu(), expected)
    assert bank.window_energy().shape == (bank.n_windows,)


def test_a_bank_left_in_host_memory_copies_its_batches_over() -> None:
    bank, _ = _bank()
    idx = torch.arange(0, bank.n_windows, 2)
    expected = bank.gather(idx)
    bank.to("cuda", max_fraction=0.0)  # pretend it does not fit
    assert not bank.data.is_cuda and bank.device.type == "cuda"
    got = bank.gather(idx)
    assert got.is_cuda
    torch.testing.assert_close(got.cpu(), expected)


def test_auto_precision_follows_the_gpus_capability() -> None:
    from paraling.device import resolve_precision

    major, _ = torch.cuda.get_device_capability()
    assert resolve_precision("auto", torch.device("cuda")) == (torch.bfloat16 if major >= 8 else None)


def _fit(capture: str, seed: int = 0, epochs: int = 2, host_bank: bool = False, mixup: float = 0.0):
    from paraling.config import TrainerConfig
    from paraling.models.cnn import WindowCNN
    from paraling.training.loop import FitOptions, fit

    bank, labels = _bank(16, 200)
    bank.to("cuda", max_fraction=0.0 if host_bank else 0.5)
    torch.manual_seed(seed)
    model = WindowCNN(40, 11, 7, [8, 16, 16], [3, 2, 2], [0.0, 0.0, 0.0], [32], 0.0)
    cfg = OmegaConf.structured(
        TrainerConfig(epochs=epochs, batch_size=64, precision="fp32", checkpoint=False, capture=capture, mixup=mixup)
    )
    idx = torch.arange(bank.n_windows)
    y = torch.from_numpy(labels[bank.utt.cpu().numpy()])
    res = fit(model, bank, idx, y, None, cfg, FitOptions(device=torch.device("cuda"), seed=seed))
    return res, {k: v.detach().cpu() for k, v in model.state_dict().items()}


def test_the_captured_step_trains_like_the_eager_one() -> None:
    eager, w_eager = _fit("eager")
    graph, w_graph = _fit("graph")
    assert graph.capture == "graph" and eager.capture == "eager"
    for k in w_eager:
        torch.testing.assert_close(w_graph[k], w_eager[k], rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(
        [h["train_loss"] for h in graph.history], [h["train_loss"] for h in eager.history], rtol=1e-4
    )


def test_a_graph_over_a_bank_in_host_memory_trains_on_every_batch() -> None:
    """The bank stays on the host (too big for the process's share): batches are staged into fixed device buffers
    outside the graph, so each replay trains on its own batch, as the eager step does."""
    _, w_eager = _fit("eager", host_bank=True)
    graph, w_graph = _fit("graph", host_bank=True)
    assert graph.capture == "graph (staged batches)" and graph.captures == 1
    for k in w_eager:
        torch.testing.assert_close(w_graph[k], w_eager[k], rtol=1e-3, atol=1e-4)


def test_one_graph_per_fit_across_epochs_and_schedules() -> None:
    res, _ = _fit("graph", epochs=4)
    assert res.capture == "graph" and res.captures == 1
    lrs = [h["lr"] for h in res.history]
    assert len(set(lrs)) == 4  # the schedule moved every epoch without a new recording


def test_mixup_is_captured_not_a_fallback() -> None:
    res, _ = _fit("graph", mixup=0.4)
    assert res.capture == "graph" and res.capture_error is None


def test_fp32_training_on_cuda_runs_without_tf32() -> None:
    _fit("eager")
    assert torch.backends.cudnn.conv.fp32_precision == "ieee"


def test_evaluation_does_not_synchronise_per_batch() -> None:
    import warnings

    from paraling.models.cnn import WindowCNN
    from paraling.training.loop import predict_windows

    bank, _ = _bank(16, 200)
    bank.to("cuda")
    model = WindowCNN(40, 11, 7, [8, 16, 16], [3, 2, 2], [0.0, 0.0, 0.0], [32], 0.0).cuda()
    idx = torch.arange(bank.n_windows)  # on the host, as an evaluation set's index is
    predict_windows(model, bank, idx, 64, torch.device("cuda"))  # warm-up
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            predict_windows(model, bank, idx, 64, torch.device("cuda"))
    finally:
        torch.cuda.set_sync_debug_mode("default")
    syncs = [w for w in caught if "synchroniz" in str(w.message)]
    assert bank.n_windows // 64 >= 8 and len(syncs) <= 2  # the final copy of the posteriors, not one per batch


def test_experiment_on_the_gpu_end_to_end(tiny_cfg, mlflow_uri: str) -> None:
    from mlflow.tracking import MlflowClient

    from paraling.pipeline.experiment import run_experiment

    res = run_experiment(tiny_cfg("device=cuda", "trainer.epochs=3"))
    run = MlflowClient(mlflow_uri).get_run(res.run_id)
    assert run.info.status == "FINISHED" and run.data.tags["paraling.training.device"].startswith("cuda")
    assert run.data.tags["paraling.training.capture"] == "graph"
    assert np.isfinite(res.uar) and res.oof.windows["window_start"].min() >= 0


def test_two_seeded_gpu_runs_give_the_same_metrics(tiny_cfg, mlflow_uri: str) -> None:
    from paraling.pipeline.experiment import run_experiment

    a = run_experiment(tiny_cfg("device=cuda", "trainer.epochs=2", "seed=3"))
    b = run_experiment(tiny_cfg("device=cuda", "trainer.epochs=2", "seed=3"))
    assert a.metrics["uar"] == b.metrics["uar"]
    np.testing.assert_array_equal(a.oof.windows["window_proba"], b.oof.windows["window_proba"])


def test_resume_on_the_gpu(tiny_cfg, mlflow_uri: str, caplog: pytest.LogCaptureFixture) -> None:
    from paraling.pipeline.experiment import run_experiment

    class KilledError(Exception):
        pass

    class StopAtEpoch1:
        def on_epoch_end(self, fold: int, epoch: int, metrics: dict[str, float]) -> None:
            if epoch == 1:
                raise KilledError

    cfg = tiny_cfg("device=cuda", "trainer.epochs=3", "trainer.checkpoint=true")
    with pytest.raises(KilledError):
        run_experiment(cfg, reporter=StopAtEpoch1())
    assert any(Path(cfg.cache_dir, "checkpoints").rglob("fold0.pt"))
    with caplog.at_level(logging.INFO, logger="paraling.training.loop"):
        res = run_experiment(cfg)
    assert "resumed from" in caplog.text and "unusable checkpoint" not in caplog.text
    assert len(res.histories[0]) == 3
