"""One confinement rule for every recipe: resolve (symbolic links included), then require the path inside the root,
unless ``corpus.allow_outside_root=true``."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from paraling.data.manifest import Manifest
from paraling.data.recipes.csv import prepare_csv
from paraling.data.recipes.folders import prepare_folders
from paraling.errors import CorpusError


def _wav(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, (np.random.default_rng(0).standard_normal(8000) * 0.1).astype(np.float32), 16000)
    return path


@pytest.fixture()
def tree(tmp_path: Path) -> dict[str, Path]:
    """``root/`` with a real file, a link inside the root and a link out of it; ``outside/`` beside it."""
    root = tmp_path / "root"
    _wav(root / "yes" / "s1_a.wav")
    _wav(root / "no" / "s2_b.wav")
    outside = _wav(tmp_path / "outside" / "s3_c.wav")
    target = _wav(root / ".store" / "s4_d.wav")  # inside the root, not a class folder
    os.symlink(target, root / "no" / "s4_inside.wav")
    os.symlink(outside, root / "no" / "s3_escape.wav")
    via = tmp_path / "via"
    os.symlink(root, via)  # the root itself reached through a link
    return {"root": root, "outside": outside, "via": via}


def test_folders_refuse_a_link_out_of_the_root(tree: dict[str, Path]) -> None:
    with pytest.raises(CorpusError, match=r"s3_escape\.wav.*outside the corpus root.*allow_outside_root"):
        prepare_folders(tree["root"], r"^(?P<speaker>[^_]+)_")
    m = prepare_folders(tree["root"], r"^(?P<speaker>[^_]+)_", allow_outside_root=True)
    assert len(m) == 4


def test_folders_accept_links_that_stay_inside_and_a_root_reached_through_a_link(tree: dict[str, Path]) -> None:
    (tree["root"] / "no" / "s3_escape.wav").unlink()
    m = prepare_folders(tree["via"], r"^(?P<speaker>[^_]+)_")
    assert len(m) == 3


def _csv(folder: Path, rows: list[str]) -> Path:
    p = folder / "corpus.csv"
    p.write_text("file,label,speaker\n" + "\n".join(rows) + "\n")
    return p


def test_csv_uses_the_same_rule(tree: dict[str, Path]) -> None:
    root = tree["root"]
    ok = _csv(root, ["yes/s1_a.wav,yes,s1", "no/s4_inside.wav,no,s4", "no/s2_b.wav,no,s2"])
    assert len(prepare_csv(tree["via"] / ok.name)) == 3  # inside links, and a root reached through a link
    _csv(root, ["yes/s1_a.wav,yes,s1", "no/s3_escape.wav,no,s3"])
    with pytest.raises(CorpusError, match="outside the corpus root"):
        prepare_csv(root / "corpus.csv")
    _csv(root, ["yes/s1_a.wav,yes,s1", "../outside/s3_c.wav,no,s3"])
    with pytest.raises(CorpusError, match="outside the corpus root"):
        prepare_csv(root / "corpus.csv")
    assert len(prepare_csv(root / "corpus.csv", allow_outside_root=True)) == 2


def _manifest(folder: Path, paths: list[str]) -> Path:
    p = folder / "m.jsonl"
    lines = [
        json.dumps({"id": f"u{i}", "path": q, "label": "yes" if i % 2 else "no", "speaker": f"s{i}", "duration": 0.5})
        for i, q in enumerate(paths)
    ]
    p.write_text("\n".join(lines) + "\n")
    return p


@pytest.mark.parametrize("escape", ["../outside/s3_c.wav", "{outside}", "no/s3_escape.wav"])
def test_manifest_uses_the_same_rule(tree: dict[str, Path], escape: str) -> None:
    root = tree["root"]
    escape = escape.format(outside=tree["outside"])
    p = _manifest(root, ["yes/s1_a.wav", escape])
    with pytest.raises(CorpusError, match="outside the corpus root"):
        Manifest.read(p)
    assert len(Manifest.read(p, allow_outside_root=True)) == 2
    assert len(Manifest.read(_manifest(root, ["yes/s1_a.wav", "no/s4_inside.wav"]))) == 2
