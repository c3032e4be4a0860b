"""Training-step runners: where a CUDA-graph step takes its batch from (the choice is a plain function, checked here
without a GPU; tests/gpu/test_cuda.py trains with both)."""

from __future__ import annotations

import pytest
import torch

from paraling.training.steps import graph_input

CPU, CUDA, CUDA0, CUDA1 = (torch.device(d) for d in ("cpu", "cuda", "cuda:0", "cuda:1"))


@pytest.mark.parametrize(
    ("data", "index", "device", "expected"),
    [
        (CUDA0, CUDA0, CUDA, "bank"),  # bank.to("cuda") puts it on cuda:0; the run's device is "cuda"
        (CUDA1, CUDA1, CUDA1, "bank"),
        (CPU, CPU, CUDA, "staged"),  # bank too big for this process's share: it stays in host memory
        (CUDA0, CPU, CUDA, "staged"),
        (CUDA0, CUDA0, CUDA1, "staged"),
        (CPU, CPU, CPU, "staged"),
    ],
)
def test_only_a_bank_on_the_training_gpu_is_gathered_inside_the_graph(
    data: torch.device, index: torch.device, device: torch.device, expected: str
) -> None:
    """A gather from host memory recorded in a graph runs once, at capture: every replay would train on that batch."""
    assert graph_input(data, index, device) == expected
