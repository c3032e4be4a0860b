"""Build hook: the top-level ``conf/`` (Hydra configuration) and ``sweeps/`` (study files) go into the wheel as
``paraling/conf`` and ``paraling/sweeps``, so an installed paraling runs from any folder (metadata: pyproject.toml).

In a source checkout (and an editable install) paraling reads them from the repository root instead
(:data:`paraling.config.CONF_DIR`).
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
DATA_DIRS = ("conf", "sweeps")


class BuildWithConfig(build_py):
    """``build_py`` that also copies ``conf/`` and ``sweeps/`` (YAML files only) into the built package."""

    def run(self) -> None:
        super().run()
        for name in DATA_DIRS:
            target = Path(self.build_lib) / "paraling" / name
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(ROOT / name, target, ignore=_only_config if name == "conf" else _only_studies)


def _only_config(folder: str, names: list[str]) -> list[str]:
    """Config groups are folders of YAML files: leave out everything else."""
    return [n for n in names if not (Path(folder, n).is_dir() or n.endswith(".yaml"))]


def _only_studies(folder: str, names: list[str]) -> list[str]:
    """Study files only: a sweep run from the checkout keeps its journal in ``sweeps/<study>/``, never shipped."""
    return [n for n in names if Path(folder, n).is_dir() or not n.endswith(".yaml")]


setup(cmdclass={"build_py": BuildWithConfig})
