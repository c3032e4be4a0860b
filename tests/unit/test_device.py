"""paraling.device: host/device crossings in one place (checked over the source); precision, capture,
determinism."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
import torch

import paraling
from paraling import device as dev

PACKAGE = Path(paraling.__file__).parent
CROSSING_CALLS = {"numpy": "to_numpy(t)", "pin_memory": "to_device(t, device)", "cuda": "to_device(t, device)"}
CROSSING_KEYWORDS = {"map_location": "load_state(path)", "non_blocking": "to_device(t, device)"}


def _crossings(path: Path) -> list[str]:
    """Device crossings in ``path`` that bypass :mod:`paraling.device`: ``file:line: what (use instead)``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        where = f"{path.relative_to(PACKAGE.parent)}:{node.lineno}"
        if isinstance(f, ast.Attribute) and f.attr in CROSSING_CALLS and not node.args:
            found.append(f"{where}: .{f.attr}() (use paraling.device.{CROSSING_CALLS[f.attr]})")
        if (
            isinstance(f, ast.Attribute)
            and f.attr == "load"
            and isinstance(f.value, ast.Name)
            and f.value.id == "torch"
        ):
            found.append(f"{where}: torch.load (use paraling.device.load_state(path))")
        for kw in node.keywords:
            if kw.arg in CROSSING_KEYWORDS:
                found.append(f"{where}: {kw.arg}= (use paraling.device.{CROSSING_KEYWORDS[kw.arg]})")
    return found


def test_device_crossings_go_through_paraling_device() -> None:
    """A bare ``.numpy()`` works on the CPU and raises on a GPU; ``torch.load(map_location=device)`` puts RNG states on
    the GPU, where ``Generator.set_state`` refuses them. Both crashed every GPU run once: keep them in one module."""
    files = [p for p in PACKAGE.rglob("*.py") if p != PACKAGE / "device.py"]
    assert len(files) > 50
    bad = [c for p in files for c in _crossings(p)]
    assert not bad, "device crossings outside paraling/device.py:\n" + "\n".join(bad)


def test_the_source_check_finds_what_it_looks_for(tmp_path: Path) -> None:
    probe = PACKAGE / "_probe_for_test.py"
    probe.write_text(
        "import torch\n"
        "def f(t, d):\n"
        "    a = t.numpy()\n"
        "    s = torch.load('x', map_location=d)\n"
        "    return t.to(d, non_blocking=True), t.pin_memory(), t.cuda(), t.numpy\n"
    )
    try:
        found = _crossings(probe)
    finally:
        probe.unlink()
    assert [f.split(": ", 1)[1].split(" ")[0] for f in found] == [
        ".numpy()",
        "torch.load",
        "map_location=",
        "non_blocking=",
        ".pin_memory()",
        ".cuda()",
    ]


def _fake_gpu(monkeypatch: pytest.MonkeyPatch, capability: tuple[int, int], emulated: bool) -> None:
    """A GPU of ``capability`` that supports bf16 natively from 8.0 and, when ``emulated``, by emulation below."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)

    def bf16(including_emulation: bool = True) -> bool:
        return capability[0] >= 8 or (emulated and including_emulation)

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", bf16)


@pytest.mark.parametrize(
    ("capability", "expected"),
    [((7, 0), None), ((7, 5), None), ((8, 0), torch.bfloat16), ((9, 0), torch.bfloat16)],
)
def test_auto_precision_on_a_gpu_needs_bf16_in_hardware(
    monkeypatch: pytest.MonkeyPatch, capability: tuple[int, int], expected: torch.dtype | None
) -> None:
    _fake_gpu(monkeypatch, capability, emulated=True)  # pre-Ampere GPUs report emulated bf16 as "supported"
    cuda = torch.device("cuda")
    assert dev.resolve_precision("auto", cuda) == expected
    assert dev.resolve_precision("bf16", cuda) == torch.bfloat16  # asked for explicitly: honoured
    assert dev.resolve_precision("fp32", cuda) is None


@pytest.mark.parametrize("native_bf16", [True, False])
def test_auto_precision_on_the_cpu_follows_the_hardware(monkeypatch: pytest.MonkeyPatch, native_bf16: bool) -> None:
    monkeypatch.setattr(dev, "cpu_has_native_bf16", lambda: native_bf16)
    cpu = torch.device("cpu")
    assert dev.resolve_precision("auto", cpu) == (torch.bfloat16 if native_bf16 else None)
    assert dev.resolve_precision("fp32", cpu) is None
    assert dev.resolve_precision("bf16", cpu) == torch.bfloat16


def test_capture_mode(caplog: pytest.LogCaptureFixture) -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert dev.capture_mode("auto", cuda) == "graph"
    assert dev.capture_mode("auto", cpu) == "eager"
    assert dev.capture_mode("compile", cpu) == "compile"
    assert dev.capture_mode("graph", cpu) == "eager" and "needs a CUDA device" in caplog.text


def test_eval_batch_size_per_device() -> None:
    from omegaconf import OmegaConf

    from paraling.config import TrainerConfig

    cfg = OmegaConf.structured(TrainerConfig(eval_batch_size=100, eval_batch_size_gpu=5000))
    assert dev.eval_batch_size(cfg, torch.device("cpu")) == 100
    assert dev.eval_batch_size(cfg, torch.device("cuda")) == 5000


def test_determinism_settings_for_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    before = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    try:
        dev.configure_determinism(torch.device("cpu"), True)  # the CPU path is deterministic already: untouched
        assert not torch.are_deterministic_algorithms_enabled()
        dev.configure_determinism(torch.device("cuda"), True)
        assert torch.are_deterministic_algorithms_enabled() and torch.is_deterministic_algorithms_warn_only_enabled()
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
        import os

        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == dev.CUBLAS_DETERMINISTIC
        dev.configure_determinism(torch.device("cuda"), False)
        assert not torch.are_deterministic_algorithms_enabled() and torch.backends.cudnn.benchmark
    finally:
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = before


def test_to_numpy_and_to_device_on_the_cpu() -> None:
    t = torch.arange(6.0, requires_grad=True) * 2
    a = dev.to_numpy(t)
    assert isinstance(a, np.ndarray) and a.tolist() == [0, 2, 4, 6, 8, 10]
    arr = np.ones(3)
    assert dev.to_numpy(arr) is arr
    x = torch.ones(3)
    assert dev.to_device(x, torch.device("cpu")) is x


def test_checkpoint_state_loads_on_the_cpu(tmp_path: Path) -> None:
    gen = torch.Generator().manual_seed(3)
    torch.save({"gen": gen.get_state(), "rng": dev.rng_state(torch.device("cpu"))}, tmp_path / "c.pt")
    state = dev.load_state(tmp_path / "c.pt")
    assert state["gen"].device.type == "cpu"
    g2 = torch.Generator()
    g2.set_state(state["gen"])
    assert torch.equal(torch.randperm(10, generator=g2), torch.randperm(10, generator=gen))
    torch.manual_seed(0)
    saved = dev.rng_state(torch.device("cpu"))
    a = torch.rand(3)
    dev.set_rng_state(saved, torch.device("cpu"))
    assert torch.equal(torch.rand(3), a)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("bogus", "is not a device"),
        ("cuda", "no CUDA GPU is visible here"),
        ("cuda:1", "no CUDA GPU is visible here"),
        ("mps", "paraling runs on cpu or cuda"),
    ],
)
def test_a_device_that_is_not_here_is_one_clear_error(name: str, message: str) -> None:
    from paraling.errors import DeviceError

    if torch.cuda.is_available() and name.startswith("cuda"):
        pytest.skip("this machine has CUDA")
    with pytest.raises(DeviceError, match=message):
        dev.resolve_device(name)
    assert dev.resolve_device("cpu") == torch.device("cpu")
    assert dev.resolve_device("auto").type in ("cpu", "cuda")


def test_a_gpu_index_past_the_visible_ones_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from paraling.errors import DeviceError

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert dev.resolve_device("cuda:1") == torch.device("cuda:1")
    with pytest.raises(DeviceError, match=r"only 2 CUDA GPU\(s\) are visible here \(cuda:0..cuda:1\)"):
        dev.resolve_device("cuda:2")


def test_same_device_treats_cuda_as_cuda_0() -> None:
    cuda, cuda0, cuda1, cpu = (torch.device(d) for d in ("cuda", "cuda:0", "cuda:1", "cpu"))
    assert dev.same_device(cuda, cuda0) and dev.same_device(cpu, torch.device("cpu"))
    assert not dev.same_device(cuda, cuda1) and not dev.same_device(cpu, cuda0)


def test_fp32_on_cuda_turns_tf32_off_and_bf16_leaves_the_default() -> None:
    """cuDNN runs fp32 convolutions in TF32 by default: ``precision=fp32`` must mean IEEE fp32 on a GPU."""
    conv, matmul = torch.backends.cudnn.conv.fp32_precision, torch.backends.cuda.matmul.fp32_precision
    try:
        torch.backends.cudnn.conv.fp32_precision = "tf32"
        dev.configure_fp32_math(torch.device("cpu"), None)  # nothing to do on the CPU
        assert torch.backends.cudnn.conv.fp32_precision == "tf32"
        dev.configure_fp32_math(torch.device("cuda"), None)
        assert torch.backends.cudnn.conv.fp32_precision == "ieee"
        assert torch.backends.cuda.matmul.fp32_precision == "ieee"
        dev.configure_fp32_math(torch.device("cuda"), torch.bfloat16)  # the next run of a sweep worker: bf16
        assert torch.backends.cudnn.conv.fp32_precision == "tf32"
    finally:
        torch.backends.cudnn.conv.fp32_precision, torch.backends.cuda.matmul.fp32_precision = conv, matmul


def test_memory_budget_is_capped_by_the_process_share() -> None:
    gib = 2**30
    assert dev.memory_budget(60 * gib, 80 * gib, None, 0) == 60 * gib
    assert dev.memory_budget(60 * gib, 80 * gib, 1.0, 5 * gib) == 60 * gib
    # four trials per GPU: 20 GiB each, 5 already held by this process's allocator
    assert dev.memory_budget(60 * gib, 80 * gib, 0.25, 5 * gib) == 15 * gib
    assert dev.memory_budget(10 * gib, 80 * gib, 0.25, 0) == 10 * gib  # the neighbours took more than theirs
    assert dev.memory_budget(60 * gib, 80 * gib, 0.25, 30 * gib) == 0


def test_available_gpu_memory_reads_the_process_share(monkeypatch: pytest.MonkeyPatch) -> None:
    gib = 2**30
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (60 * gib, 80 * gib))
    monkeypatch.setattr(torch.cuda, "get_per_process_memory_fraction", lambda device=None: 0.25, raising=False)
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: 4 * gib)
    assert dev.available_memory(torch.device("cuda")) == 16 * gib


def test_cublas_workspace_is_set_before_cuda_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    assert dev.prepare_determinism_env(False) and "CUBLAS_WORKSPACE_CONFIG" not in os.environ
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)
    assert dev.prepare_determinism_env(True)
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == dev.CUBLAS_DETERMINISTIC


def test_cublas_workspace_set_after_cuda_started_warns(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)  # a sweep worker whose earlier trial used CUDA
    assert not dev.prepare_determinism_env(True)
    assert "may not be bit-reproducible" in caplog.text


def test_a_run_sets_cublas_workspace_before_it_touches_the_device(
    tiny_cfg, mlflow_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The variable only works when set before cuBLAS starts: the run sets it before it asks the device anything."""
    import os

    from paraling.pipeline import experiment

    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    seen = []
    real = experiment.available_memory

    def spy(device: torch.device) -> int:
        seen.append(os.environ.get("CUBLAS_WORKSPACE_CONFIG"))
        return real(device)

    monkeypatch.setattr(experiment, "available_memory", spy)
    experiment.run_experiment(tiny_cfg("trainer.deterministic=true", "tracking=none"))
    assert seen == [dev.CUBLAS_DETERMINISTIC]
