"""glibc malloc settings for CPU training (their speed effect is measured by `paraling bench`, not asserted here)."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt is Linux-only")
def test_keep_freed_memory_takes_effect_once_per_process() -> None:
    code = (
        "import paraling.training.malloc as m, torch\n"
        "assert not m._done\n"
        "assert m.keep_freed_memory() and m._done and m.keep_freed_memory()\n"
        "for _ in range(3):\n"
        "    x = torch.ones(4 << 20); del x\n"  # 16 MB blocks still allocate and free normally
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ok"
