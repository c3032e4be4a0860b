"""A wheel built with ``pip wheel .`` carries the configs and studies: installed (not editable) into a fresh venv,
away from the source tree, ``paraling train --help`` and ``paraling sweep demo --check`` work."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_a_built_wheel_runs_without_the_source_tree(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(dist), str(ROOT)],
        check=True,
        cwd=tmp_path,
    )
    (wheel,) = dist.glob("paraling-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    py = venv / "bin" / "python"
    subprocess.run([py, "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], check=True)
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MLFLOW_TRACKING_URI")}
    where = subprocess.run(
        [py, "-c", "import paraling.config as c; print(c.__file__); print(c.CONF_DIR); print(c.SWEEPS_DIR)"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert all(p.startswith(str(venv)) for p in where), where  # the installed copy, not the source tree
    assert (Path(where[1]) / "config.yaml").is_file() and (Path(where[1]) / "experiment" / "paper.yaml").is_file()
    assert (Path(where[2]) / "demo.yaml").is_file()
    paraling = venv / "bin" / "paraling"
    helped = subprocess.run([paraling, "train", "--help"], cwd=work, env=env, capture_output=True, text=True)
    assert helped.returncode == 0 and "corpus" in helped.stdout, helped.stderr[-2000:]
    checked = subprocess.run([paraling, "sweep", "demo", "--check"], cwd=work, env=env, capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout[-2000:] + checked.stderr[-2000:]
    assert not list(venv.glob("lib/*/site-packages/paraling/sweeps/*/"))  # --check wrote nothing into the package


def test_a_users_config_folder_is_added_the_hydra_way(tmp_path: Path) -> None:
    """``paraling train --config-dir DIR`` adds DIR to Hydra's search path: its experiments compose on top."""
    (tmp_path / "experiment").mkdir()
    (tmp_path / "experiment" / "mine.yaml").write_text("# @package _global_\nname: mine\ntrainer:\n  epochs: 3\n")
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "paraling.cli.main",
            "train",
            "--config-dir",
            str(tmp_path),
            "experiment=mine",
            "--cfg",
            "job",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "name: mine" in out and "epochs: 3" in out
