"""The bundle format: an ensemble's members' model folders and ``bundle.json``; one writer, one reader.

Format ``paraling-bundle/1``: ``bundle.json`` holds ``format``, ``classes``, ``combiner``, ``members`` (each
``run_id``, ``name``, integer ``weight`` > 0 and ``dir``, the member's model folder relative to the bundle) and
``info``; the member folders (:mod:`paraling.tracking.model_dir`) live under ``members/<run_id>/``.

A bundle may come from a tracking server another user can write to, so :func:`read_bundle` trusts nothing in it:
every key is type-checked, and a member folder must lie inside the bundle (``"../x"``, ``"/abs/x"`` or a symbolic
link out of it is refused), as ``runs:/<id>/../..`` is for artifact paths.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from paraling.atomic import atomic_path
from paraling.errors import ModelError
from paraling.tracking.model_dir import SPEC_FILE, read_spec

__all__ = ["BUNDLE_FILE", "BUNDLE_FORMAT", "Bundle", "BundleMember", "read_bundle", "save_bundle"]

BUNDLE_FILE = "bundle.json"
BUNDLE_FORMAT = "paraling-bundle/1"


@dataclass(frozen=True)
class BundleMember:
    """One member: its run, display name, integer weight and model folder (inside the bundle)."""

    run_id: str
    name: str
    weight: int
    path: Path


@dataclass(frozen=True)
class Bundle:
    """A read and validated ``bundle.json``."""

    path: Path
    classes: list[str]
    combiner: str
    members: list[BundleMember]
    info: dict[str, Any] = field(default_factory=dict)


def _inside(root: Path, rel: object, where: str) -> Path:
    """``root / rel`` when it stays inside ``root`` after resolving ``..`` and symbolic links."""
    if not isinstance(rel, str) or not rel or Path(rel).is_absolute():
        raise ModelError(f"{where}: member folder {rel!r} must be a relative path inside the bundle")
    base = root.resolve()
    target = (root / rel).resolve()
    if target != base and base not in target.parents:
        raise ModelError(
            f"{where}: member folder {rel!r} points outside the bundle ({target}); refusing to load it -- the "
            "bundle is damaged or was tampered with"
        )
    return target


def read_bundle(folder: str | Path) -> Bundle:
    """Read and validate ``folder/bundle.json`` (member folders are located, not loaded).

    Raises:
        ModelError: Not JSON, a format this paraling does not read, missing or mistyped keys, a weight that is not
            a whole number > 0, or a member folder outside the bundle.
    """
    root = Path(folder)
    f = root / BUNDLE_FILE
    where = str(f)
    try:
        d = json.loads(f.read_text())
    except (OSError, ValueError) as exc:
        raise ModelError(f"{where}: not readable JSON ({' '.join(str(exc).split())}); re-create the bundle") from None
    if not isinstance(d, dict):
        raise ModelError(f"{where}: expected a JSON object; re-create the bundle")
    if d.get("format") != BUNDLE_FORMAT:
        raise ModelError(f"{where}: unknown format {d.get('format')!r} (this paraling reads {BUNDLE_FORMAT!r})")
    classes, combiner, members = d.get("classes"), d.get("combiner"), d.get("members")
    if not isinstance(classes, list) or len(classes) < 2 or not all(isinstance(c, str) for c in classes):
        raise ModelError(f"{where}: 'classes' must be a list of at least two class names")
    if not isinstance(combiner, str) or not combiner:
        raise ModelError(f"{where}: 'combiner' must name a combiner")
    if not isinstance(members, list) or not members:
        raise ModelError(f"{where}: 'members' must be a non-empty list")
    out = []
    for i, m in enumerate(members):
        if not isinstance(m, dict) or not isinstance(m.get("run_id"), str) or "dir" not in m:
            raise ModelError(f"{where}: member {i} needs 'run_id' and 'dir'")
        weight = m.get("weight", 1)
        if not isinstance(weight, int) or isinstance(weight, bool) or weight < 1:
            raise ModelError(f"{where}: member {m['run_id']}: 'weight' must be a whole number >= 1, not {weight!r}")
        path = _inside(root, m["dir"], f"{where}, member {m['run_id']}")
        out.append(BundleMember(m["run_id"], str(m.get("name", m["run_id"])), weight, path))
    info = d.get("info")
    info = info if isinstance(info, dict) else {}
    return Bundle(root, list(classes), combiner, out, info)


def save_bundle(
    dst: str | Path, members: Sequence[tuple[str, str, Path, int]], combiner: str, extra: dict[str, Any] | None = None
) -> Path:
    """Write a bundle: copy each member's ``model/`` folder and describe the ensemble in ``bundle.json``.

    Args:
        dst: New folder.
        members: ``(run_id, display name, model folder, integer weight)`` per member (weight > 0).
        combiner: The combiner's name (:data:`paraling.ensemble.COMBINERS`).
        extra: More JSON written under ``"info"`` (e.g. the ensemble run id, its UARs).

    Returns:
        ``dst``, read back with :func:`read_bundle` and every member's spec before returning.
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
    with atomic_path(dst / BUNDLE_FILE) as tmp:
        tmp.write_text(json.dumps(info, indent=2))
    for m in read_bundle(dst).members:
        read_spec(m.path / SPEC_FILE)
    return dst
