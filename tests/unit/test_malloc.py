"""glibc keeps freed activation memory: repeated large allocations stop faulting pages in."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

_PROBE = """
import resource, sys, torch
from paraling.malloc import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory() and keep_freed_memory()  # idempotent
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
x = torch.empty(0)
for _ in range(3):  # warm-up: the heap grows once
    x = torch.ones(8 << 20); del x
f0 = faults()
for _ in range(20):
    x = torch.ones(8 << 20)  # 32 MB, freed at the next assignment
    del x
print(faults() - f0)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt is Linux-only")
def test_freed_blocks_are_reused_without_page_faults() -> None:
    def run(mode: str) -> int:
        out = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(_PROBE), mode], capture_output=True, text=True, check=True
        )
        return int(out.stdout.split()[-1])

    default, keep = run("default"), run("keep")
    assert default > 20 * 4000  # each 32 MB block is mmapped afresh: ~8,000 faults of 4 KiB pages
    assert keep < default / 3  # typically 0; the kernel may still reclaim a few idle blocks
