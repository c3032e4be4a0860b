"""GPU assignment: parsing --gpus, spreading workers over GPUs, and the environment a spawned worker sees."""

from __future__ import annotations

import multiprocessing as mp
import os

import pytest

from paraling.errors import ConfigError
from paraling.search.gpus import parse_gpus, plan_gpus, trial_gpu, visible_gpus, worker_env


def test_parse_gpus() -> None:
    assert parse_gpus("0,1, 3") == ["0", "1", "3"]
    assert parse_gpus(None) is None and parse_gpus("all") is None
    assert parse_gpus("none") == []
    assert parse_gpus("GPU-8f1a,MIG-2") == ["GPU-8f1a", "MIG-2"]
    for bad in ("0,,1", "0,0", "cuda:0", "-1"):
        with pytest.raises(ConfigError, match="--gpus"):
            parse_gpus(bad)


def test_plan_gpus() -> None:
    assert plan_gpus(["0", "1"], 2, None) == ["0", "1", "0", "1"]
    assert plan_gpus(["0", "1", "2"], 1, 4) == ["0", "1", "2", "0"]  # --workers wins, round-robin
    assert plan_gpus([], 3, None) == [None]  # no GPU: the CPU default of one worker
    assert plan_gpus([], 1, 3) == [None, None, None]
    with pytest.raises(ConfigError, match="trials-per-gpu"):
        plan_gpus(["0"], 0, None)
    with pytest.raises(ConfigError, match="--workers"):
        plan_gpus([], 1, 0)


def _seen(q: mp.Queue) -> None:  # runs in a spawned child
    q.put((os.environ.get("CUDA_VISIBLE_DEVICES"), trial_gpu()))


def test_each_spawned_worker_sees_only_its_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")  # the parent's own restriction is not what children see
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = []
    for gpu in ("2", "3"):
        p = ctx.Process(target=_seen, args=(q,))
        with worker_env(gpu):
            p.start()
        procs.append(p)
    seen = sorted(q.get(timeout=60) for _ in procs)
    for p in procs:
        p.join(timeout=60)
    assert seen == [("2", "2"), ("3", "3")]
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "2,3"  # restored in the parent
    assert trial_gpu() is None  # two ids: not one assigned GPU


def test_visible_gpus_without_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert visible_gpus() == []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,6")
    assert visible_gpus() == ["4", "6"]  # the ids name the parent's physical GPUs
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert visible_gpus() == ["0", "1"]
