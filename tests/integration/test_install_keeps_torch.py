"""Installing paraling where a torch build is already installed keeps that build (a GPU box's torch matches its
driver): pip's plan for ``pip install -e .`` in an environment holding torch 2.11.0 installs no other torch."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _stand_in_torch(folder: Path, version: str) -> Path:
    """A wheel that installs as ``torch`` ``version`` (metadata only: pip's resolver reads nothing else)."""
    wheel = folder / f"torch-{version}-py3-none-any.whl"
    info = f"torch-{version}.dist-info"
    files = {
        "torch/__init__.py": f'__version__ = "{version}"\n',
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: torch\nVersion: {version}\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: paraling-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    files[f"{info}/RECORD"] = "".join(f"{name},,\n" for name in [*files, f"{info}/RECORD"])
    with zipfile.ZipFile(wheel, "w") as z:
        for name, text in files.items():
            z.writestr(name, text)
    return wheel


@pytest.mark.slow
@pytest.mark.parametrize("version", ["2.11.0", "2.13.0"])
def test_an_installed_torch_is_kept(tmp_path: Path, version: str) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check"]
    subprocess.run([*pip, "install", "-q", "--no-index", str(_stand_in_torch(tmp_path, version))], check=True)
    report = tmp_path / "report.json"
    plan = subprocess.run(
        [*pip, "install", "--dry-run", "-q", "--report", str(report), "-e", str(ROOT)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert plan.returncode == 0, plan.stderr[-3000:]
    install = {
        i["metadata"]["name"].lower(): i["metadata"]["version"] for i in json.loads(report.read_text())["install"]
    }
    assert "torch" not in install, f"pip would replace torch {version} with {install.get('torch')}"
    assert "paraling" in install and "torchaudio" in install
