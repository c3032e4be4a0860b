"""What `paraling predict` trusts: a bundle's member folders stay inside it, and every damaged model file is one
ModelError line naming the file (issue 27: items 1 and 4)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from paraling.cli.main import main as cli_main
from paraling.errors import ModelError
from paraling.serving.predict import Predictor
from paraling.tracking.bundle import save_bundle

from .test_predict import make_member


def _bundle(tmp_path: Path) -> Path:
    member = make_member(tmp_path / "src")
    return save_bundle(tmp_path / "bundle", [("run-a", "a", member, 1)], "mean")


def _edit_bundle(bundle: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    info = json.loads((bundle / "bundle.json").read_text())
    edit(info)
    (bundle / "bundle.json").write_text(json.dumps(info))


@pytest.mark.parametrize("where", ["../planted", "ABS", "link"])
def test_a_member_folder_outside_the_bundle_is_refused(tmp_path: Path, where: str) -> None:
    """A bundle downloaded from a tracking server must not point predict at a folder another user planted."""
    bundle = _bundle(tmp_path)
    planted = make_member(tmp_path / "planted")  # a perfectly loadable model, outside the bundle
    if where == "link":
        (bundle / "members" / "evil").symlink_to(planted, target_is_directory=True)
        target = "members/evil"
    else:
        target = str(planted) if where == "ABS" else "../planted"

    def point(info: dict[str, Any]) -> None:
        info["members"][0]["dir"] = target

    _edit_bundle(bundle, point)
    with pytest.raises(ModelError, match="outside the bundle|must be a relative path inside the bundle"):
        Predictor.load(bundle)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda i: i.pop("members"), "'members' must be a non-empty list"),
        (lambda i: i.update(classes="abc"), "'classes' must be a list"),
        (lambda i: i["members"][0].update(weight=0), "'weight' must be a whole number >= 1"),
        (lambda i: i["members"][0].pop("dir"), "needs 'run_id' and 'dir'"),
        (lambda i: i.update(format="paraling-bundle/9"), "unknown format"),
    ],
)
def test_a_bundle_json_without_its_keys_is_one_model_error(tmp_path: Path, edit, message: str) -> None:
    bundle = _bundle(tmp_path)
    _edit_bundle(bundle, edit)
    with pytest.raises(ModelError, match=message):
        Predictor.load(bundle)


def test_a_bundle_json_that_is_not_json_is_one_model_error(tmp_path: Path) -> None:
    bundle = _bundle(tmp_path)
    (bundle / "bundle.json").write_text("{not json")
    with pytest.raises(ModelError, match="bundle.json: not readable JSON"):
        Predictor.load(bundle)


def _edit_spec(member: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    spec = json.loads((member / "spec.json").read_text())
    edit(spec)
    (member / "spec.json").write_text(json.dumps(spec))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda s: s.update(model={}), "'model' is empty"),
        (lambda s: s["model"].update(n_blocks="three"), "n_blocks must be a whole number"),
        (lambda s: s["windows"].update(width=0), "must be >= 1"),
        (lambda s: s.update(n_mels=0), "must be >= 1"),
        (lambda s: s["model"].update(fc_sizes=[1e12]), "fc_sizes must hold whole numbers"),
        (lambda s: s["model"].update(fc_sizes=[10**12]), "weights \\(more than"),  # refused before allocating
        (lambda s: s.update(classes=["a"]), "at least two distinct classes"),
    ],
)
def test_a_damaged_spec_is_one_model_error(tmp_path: Path, edit, message: str) -> None:
    member = make_member(tmp_path / "m")
    _edit_spec(member, edit)
    with pytest.raises(ModelError, match=message):
        Predictor.load(member)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda a: a["fitted"].update(n_classes_=5), "the model has 3 classes"),
        (lambda a: a["fitted"].update(coef_=[[1.0, 2.0]]), "coef_ must be"),
        (lambda a: a["fitted"].update(intercept_=[1.0, 2.0, 3.0, 4.0]), "intercept_ must be"),
        (lambda a: a["fitted"].update(energy_scale_=0.0), "energy_scale_ must be > 0"),
    ],
)
def test_a_fold_file_that_does_not_fit_the_model_is_one_model_error(tmp_path: Path, edit, message: str) -> None:
    member = make_member(tmp_path / "m")
    state = json.loads((member / "fold0.json").read_text())
    edit(state["aggregation"])
    (member / "fold0.json").write_text(json.dumps(state))
    with pytest.raises(ModelError, match=message):
        Predictor.load(member)


def test_predict_prints_one_line_for_a_damaged_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    member = make_member(tmp_path / "m")
    _edit_spec(member, lambda s: s["model"].update(fc_sizes=[10**12]))
    wav = tmp_path / "x.wav"
    wav.write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        cli_main(["predict", "--model", str(member), str(wav)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1 and "spec.json" in err
