"""Models registered before the stage layout still load: their entry script imports paraling.registry."""

from __future__ import annotations

import subprocess
import sys

from paraling.tracking import registry


def test_the_old_entry_script_finds_paraling_model() -> None:
    old_entry = "from paraling.registry import ParalingModel\nprint(ParalingModel.__module__)\n"
    out = subprocess.run([sys.executable, "-c", old_entry], capture_output=True, text=True, check=True).stdout
    assert out.strip() == registry.ParalingModel.__module__ == "paraling.tracking.registry"
    assert "from paraling.tracking.registry import ParalingModel" in registry._ENTRY  # new models name the new home
