"""GPU assignment: parsing --gpus, spreading workers over GPUs, and the environment a spawned worker sees."""

from __future__ import annotations

import multiprocessing as mp
import os

import pytest

from paraling.errors import ConfigError, DeviceError
from paraling.search.gpus import (
    apply_gpu_share,
    check_gpus,
    gpu_shares,
    launcher_pins_gpus,
    parse_gpus,
    plan_gpus,
    require_assigned_gpu,
    trial_gpu,
    visible_gpus,
    worker_env,
)


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
    q.put((os.environ.get("CUDA_VISIBLE_DEVICES"), trial_gpu(), os.environ.get("PARALING_GPU_SHARE")))


def test_each_spawned_worker_sees_only_its_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")  # the parent's own restriction is not what children see
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = []
    for gpu, share in (("2", 0.5), ("3", None)):
        p = ctx.Process(target=_seen, args=(q,))
        with worker_env(gpu, share):
            p.start()
        procs.append(p)
    seen = sorted(q.get(timeout=60) for _ in procs)
    for p in procs:
        p.join(timeout=60)
    assert seen == [("2", "2", "0.500000"), ("3", "3", None)]
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "2,3"  # restored in the parent
    assert "PARALING_GPU" not in os.environ and "PARALING_GPU_SHARE" not in os.environ
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


def test_gpus_that_are_not_visible_are_refused() -> None:
    assert check_gpus(["1", "0"], ["0", "1"]) == ["1", "0"]
    assert check_gpus([], []) == []
    with pytest.raises(DeviceError, match="no CUDA GPU is visible here, so the trials would run on the CPU"):
        check_gpus(["0"], [])
    with pytest.raises(DeviceError, match=r"GPU\(s\) 3 not visible here \(visible: 0,1"):
        check_gpus(["0", "3"], ["0", "1"])


def test_each_worker_gets_its_share_of_its_gpu() -> None:
    assert gpu_shares(["0", "0", "0", "0"]) == [0.25] * 4
    assert gpu_shares(["0", "1", "0"]) == [0.5, 1.0, 0.5]
    assert gpu_shares([None, None]) == [None, None]


def test_only_fresh_local_processes_are_confined_by_the_environment() -> None:
    assert launcher_pins_gpus("hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher")
    for target in (
        "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher",  # SLURM binds GPUs itself
        "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher",  # reused workers
        "hydra._internal.core_plugins.basic_launcher.BasicLauncher",  # jobs in the sweeper's own process
        "",
    ):
        assert not launcher_pins_gpus(target)


def test_hydra_jobs_get_gpus_only_from_a_launcher_that_can_confine_them(monkeypatch: pytest.MonkeyPatch) -> None:
    from paraling.search import gpus
    from paraling.search.hydra_sweeper import _job_gpus

    local = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher"
    joblib = "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"
    monkeypatch.setattr(gpus, "visible_gpus", lambda: ["0", "1"])
    assert _job_gpus(None, local) == ["0", "1"] and _job_gpus(["1"], local) == ["1"]
    assert _job_gpus(None, joblib) == []  # nothing forced on reused workers
    with pytest.raises(ConfigError, match="cannot confine a job to a GPU"):
        _job_gpus(["0"], joblib)
    with pytest.raises(DeviceError, match="not visible"):
        _job_gpus(["5"], local)


def test_a_worker_given_a_gpu_never_trains_on_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.delenv("PARALING_GPU", raising=False)
    require_assigned_gpu()  # no GPU assigned: the CPU is what was asked for
    monkeypatch.setenv("PARALING_GPU", "0")
    with pytest.raises(DeviceError, match="was given GPU 0 .* but CUDA is not available in it"):
        require_assigned_gpu()


def test_the_share_caps_this_process_cuda_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    applied = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "set_per_process_memory_fraction", lambda f, device=None: applied.append(f))
    monkeypatch.delenv("PARALING_GPU_SHARE", raising=False)
    assert apply_gpu_share() is None
    monkeypatch.setenv("PARALING_GPU_SHARE", "0.250000")
    assert apply_gpu_share() == 0.25 and applied == [0.25]
