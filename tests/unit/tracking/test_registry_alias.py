"""Models registered by earlier releases still load: their entry scripts import ParalingModel from
paraling.registry or paraling.tracking.registry; new ones name paraling.serving.pyfunc."""

from __future__ import annotations

import subprocess
import sys

import pytest

from paraling.tracking import registry


@pytest.mark.parametrize("module", ["paraling.registry", "paraling.tracking.registry", "paraling.serving.pyfunc"])
def test_every_entry_script_finds_paraling_model(module: str) -> None:
    entry = f"from {module} import ParalingModel\nprint(ParalingModel.__module__)\n"
    out = subprocess.run([sys.executable, "-c", entry], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "paraling.serving.pyfunc"


def test_new_models_name_the_serving_module() -> None:
    assert "from paraling.serving.pyfunc import ParalingModel" in registry._ENTRY
