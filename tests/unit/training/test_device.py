"""paraling.training.device: host/device crossings in one place (checked over the source); precision, capture,
determinism."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
import torch

import paraling
from paraling.training import device as dev

PACKAGE = Path(paraling.__file__).parent
CROSSING_CALLS = {"numpy": "to_numpy(t)", "pin_memory": "to_device(t, device)", "cuda": "to_device(t, device)"}
CROSSING_KEYWORDS = {"map_location": "load_state(path)", "non_blocking": "to_device(t, device)"}


def _crossings(path: Path) -> list[str]:
    """Device crossings in ``path`` that bypass :mod:`paraling.training.device`: ``file:line: what (use instead)``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        where = f"{path.relative_to(PACKAGE.parent)}:{node.lineno}"
        if isinstance(f, ast.Attribute) and f.attr in CROSSING_CALLS and not node.args:
            found.append(f"{where}: .{f.attr}() (use paraling.training.device.{CROSSING_CALLS[f.attr]})")
        if (
            isinstance(f, ast.Attribute)
            and f.attr == "load"
            and isinstance(f.value, ast.Name)
            and f.value.id == "torch"
        ):
            found.append(f"{where}: torch.load (use paraling.training.device.load_state(path))")
        for kw in node.keywords:
            if kw.arg in CROSSING_KEYWORDS:
                found.append(f"{where}: {kw.arg}= (use paraling.training.device.{CROSSING_KEYWORDS[kw.arg]})")
    return found


def test_device_crossings_go_through_paraling_device() -> None:
    """A bare ``.numpy()`` works on the CPU and raises on a GPU; ``torch.load(map_location=device)`` puts RNG states on
    the GPU, where ``Generator.set_state`` refuses them. Both crashed every GPU run once: keep them in one module."""
    files = [p for p in PACKAGE.rglob("*.py") if p != PACKAGE / "training" / "device.py"]
    assert len(files) > 50
    bad = [c for p in files for c in _crossings(p)]
    assert not bad, "device crossings outside paraling/training/device.py:\n" + "\n".join(bad)


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
