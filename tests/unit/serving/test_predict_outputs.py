"""Where `paraling predict` writes (issue 27, items 11-14): checked before predicting, never over an input, a folder
or a foreign folder, written atomically; a device that is not here is one line."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from paraling.cli.main import main as cli_main

from .test_predict import make_member


@pytest.fixture()
def setup(tmp_path: Path) -> tuple[Path, Path, Path]:
    member = make_member(tmp_path / "m")
    t = np.arange(8000) / 16000
    a, b = tmp_path / "a.wav", tmp_path / "b.wav"
    sf.write(a, 0.3 * np.sin(2 * np.pi * 440 * t), 16000)
    sf.write(b, 0.3 * np.sin(2 * np.pi * 880 * t), 16000)
    return member, a, b


def _refused(argv: list[str], capsys: pytest.CaptureFixture[str], *needles: str) -> str:
    with pytest.raises(SystemExit) as exc:
        cli_main(["predict", *argv])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "Traceback" not in err, err
    assert len([x for x in err.splitlines() if x.startswith("paraling: error:")]) == 1, err
    for n in needles:
        assert n in err, err
    return err


def test_out_never_overwrites_an_input(setup, capsys: pytest.CaptureFixture[str]) -> None:
    member, a, b = setup
    before = a.read_bytes()
    _refused(["--model", str(member), "--out", str(a), str(a), str(b)], capsys, "is one of the input files")
    assert a.read_bytes() == before


def test_out_over_a_file_that_is_not_a_prediction_table_needs_force(
    setup, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    member, a, _ = setup
    notes = tmp_path / "notes.csv"
    notes.write_text("my,own,data\n1,2,3\n")
    _refused(
        ["--model", str(member), "--out", str(notes), str(a)], capsys, "not a paraling prediction table", "--force"
    )
    assert notes.read_text() == "my,own,data\n1,2,3\n"
    assert cli_main(["predict", "--model", str(member), "--out", str(notes), "--force", str(a)]) == 0
    assert notes.read_text().startswith("path,label,error")
    # a previous prediction table is replaced without --force
    assert cli_main(["predict", "--model", str(member), "--out", str(notes), str(a)]) == 0


@pytest.mark.parametrize("target", ["folder", "under_a_file"])
def test_unwritable_out_is_refused_before_predicting(
    setup, tmp_path: Path, capsys: pytest.CaptureFixture[str], target: str
) -> None:
    member, a, _ = setup
    (tmp_path / "folder").mkdir()
    (tmp_path / "file").write_text("x")
    out = tmp_path / "folder" if target == "folder" else tmp_path / "file" / "p.csv"
    err = _refused(["--model", str(member), "--out", str(out), str(a)], capsys)
    assert "is a folder" in err or "is a file, not a folder" in err
    assert "predicted" not in err  # nothing was predicted only to be lost


def test_explain_refuses_a_folder_of_another_user(
    setup, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    member, a, _ = setup
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    from paraling.serving import outputs

    owner = theirs.stat().st_uid
    monkeypatch.setattr(outputs.os, "getuid", lambda: owner + 1)  # as if another user had created it first
    _refused(["--model", str(member), "--explain", str(theirs), str(a)], capsys, "belongs to another user")


def test_explain_replaces_a_planted_link_instead_of_writing_through_it(
    setup, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    member, a, _ = setup
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    why = tmp_path / "why"
    why.mkdir()
    (why / "segments.json").symlink_to(victim)
    (why / "a.png").symlink_to(victim)
    assert cli_main(["predict", "--model", str(member), "--explain", str(why), str(a)]) == 0
    assert victim.read_text() == "precious"
    assert not (why / "segments.json").is_symlink() and not (why / "a.png").is_symlink()


@pytest.mark.parametrize(("device", "needle"), [("bogus", "is not a device"), ("cuda:7", "CUDA")])
def test_a_device_that_is_not_here_is_one_line(
    setup, capsys: pytest.CaptureFixture[str], device: str, needle: str
) -> None:
    member, a, _ = setup
    if device.startswith("cuda"):
        import torch

        if torch.cuda.device_count() > 7:
            pytest.skip("this machine has 8 GPUs")
    _refused(["--model", str(member), "--device", device, str(a)], capsys, needle)


def test_outputs_are_checked_with_a_relative_path_too(setup, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    member, _, _ = setup
    monkeypatch.chdir(tmp_path)
    assert cli_main(["predict", "--model", str(member), "--out", "p.json", "a.wav"]) == 0
    assert os.path.exists("p.json")
