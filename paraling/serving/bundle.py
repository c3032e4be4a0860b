"""Writing a bundle: the members' model folders and ``bundle.json`` (read by
:class:`paraling.serving.predict.Predictor`)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from paraling.serving.predict import BUNDLE_FILE, BUNDLE_FORMAT, Predictor
from paraling.tracking.model_dir import SPEC_FILE, read_spec

__all__ = ["save_bundle"]


def save_bundle(
    dst: str | Path, members: Sequence[tuple[str, str, Path, int]], combiner: str, extra: dict[str, Any] | None = None
) -> Path:
    """Write a bundle: copy each member's ``model/`` folder and describe the ensemble in ``bundle.json``.

    Args:
        dst: New folder.
        members: ``(run_id, display name, model folder, integer weight)`` per member (weight > 0).
        combiner: One of :data:`paraling.ensemble.COMBINERS`.
        extra: More JSON written under ``"info"`` (e.g. the ensemble run id, its UARs).

    Returns:
        ``dst``. The bundle is loaded (checked) before returning.
    """
    dst = Path(dst)
    dst.mkdir(parents=True, exist_ok=False)
    entries, classes = [], None
    for run_id, name, folder, weight in members:
        sub = Path("members") / run_id
        shutil.copytree(folder, dst / sub)
        classes = classes or read_spec(dst / sub / SPEC_FILE).classes
        entries.append({"run_id": run_id, "name": name, "weight": int(weight), "dir": sub.as_posix()})
    info = {"format": BUNDLE_FORMAT, "classes": classes, "combiner": combiner, "members": entries, "info": extra or {}}
    (dst / BUNDLE_FILE).write_text(json.dumps(info, indent=2))
    Predictor.load(dst)
    return dst
