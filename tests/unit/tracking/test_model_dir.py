"""The model folder: one writer, one reader, a format name; folders written before the name existed still load."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from paraling.errors import ModelError
from paraling.models.cnn import build_model
from paraling.serving.predict import CNNMember, Predictor
from paraling.tracking.model_dir import (
    MODEL_FORMAT,
    SPEC_FILE,
    ModelDir,
    ModelSpec,
    missing_files,
    read_spec,
    save_model_dir,
    state_name,
    weights_name,
)

#: A model/ folder written by paraling's writer as it was before the format had a name (2 folds, 3 classes).
BEFORE = Path(__file__).parents[2] / "data" / "model-before-format"


def _tone(path: Path, hz: float) -> Path:
    t = np.arange(16000) / 16000
    sf.write(path, (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32), 16000)
    return path


def test_a_folder_from_before_the_format_name_loads_and_predicts(tmp_path: Path) -> None:
    assert "format" not in json.loads((BEFORE / SPEC_FILE).read_text())
    folder = ModelDir.load(BEFORE)
    assert folder.spec.folds == [0, 1] and folder.spec.classes == ["a", "b", "c"]
    assert folder.spec.precision == "bf16" and folder.spec.method == "weighted"  # as written
    member = CNNMember.load(BEFORE)
    assert [f.fold for f in member.folds] == [0, 1] and member.spec["format"] == MODEL_FORMAT
    pred = Predictor.load(BEFORE).predict([_tone(tmp_path / "x.wav", 440.0)])[0]
    assert pred.error is None and pred.label in ("a", "b", "c")
    assert pred.proba.shape == (3,) and pred.proba.sum() == pytest.approx(1.0, abs=1e-5)


def test_keys_older_folders_lack_take_the_values_those_runs_used() -> None:
    spec = json.loads((BEFORE / SPEC_FILE).read_text())
    for key in ("precision", "channels_last", "aggregation", "layer_names"):
        spec.pop(key)
    old = ModelSpec.from_dict(spec)
    assert (old.precision, old.channels_last, old.method, old.layer_names) == ("fp32", False, "weighted", [])


def test_written_folders_round_trip_and_name_their_format(tmp_path: Path) -> None:
    old = ModelDir.load(BEFORE)
    weights = {k: old.weights(k) for k in old.spec.folds}
    states = {k: json.loads(old.state_path(k).read_text()) for k in old.spec.folds}  # type: ignore[union-attr]
    out = save_model_dir(tmp_path / "model", old.spec, weights, states)
    assert json.loads((out / SPEC_FILE).read_text())["format"] == MODEL_FORMAT
    again = ModelDir.load(out)
    assert again.spec == old.spec
    for k in old.spec.folds:
        assert all(torch.equal(again.weights(k)[n], t) for n, t in weights[k].items())
    model = build_model(
        type("M", (), old.spec.model)(), old.spec.n_mels, int(old.spec.windows["width"]), len(old.spec.classes)
    )
    model.load_state_dict(again.weights(1))
    with pytest.raises(FileExistsError):  # a model folder is written once
        save_model_dir(out, old.spec, weights, states)
    with pytest.raises(ValueError, match="folds"):
        save_model_dir(tmp_path / "other", old.spec, {0: weights[0]}, states)


def test_a_newer_format_is_refused_with_the_fix(tmp_path: Path) -> None:
    d = shutil.copytree(BEFORE, tmp_path / "model")
    spec = json.loads((d / SPEC_FILE).read_text())
    (d / SPEC_FILE).write_text(json.dumps({**spec, "format": "paraling-model/2"}))
    with pytest.raises(ModelError, match=r"paraling-model/2.*upgrade paraling"):
        ModelDir.load(d)
    (d / SPEC_FILE).write_text(json.dumps({k: v for k, v in spec.items() if k != "n_mels"}))
    with pytest.raises(ModelError, match=r"spec.json: not a valid paraling spec.*n_mels"):
        read_spec(d / SPEC_FILE)
    (d / SPEC_FILE).write_text("{")
    with pytest.raises(ModelError, match="cannot read the model spec"):
        CNNMember.load(d)


def test_missing_files_names_the_first_gap() -> None:
    spec = ModelSpec.from_dict(json.loads((BEFORE / SPEC_FILE).read_text()))
    everything = {SPEC_FILE, *(weights_name(k) for k in (0, 1)), *(state_name(k) for k in (0, 1))}
    assert missing_files(spec, everything) == ""
    assert missing_files(spec, everything - {weights_name(1)}) == "fold1.safetensors missing"
    assert "fitted vote" in missing_files(spec, everything - {state_name(0)})
    other = ModelSpec.from_dict({**spec.to_dict(), "model": {**spec.model, "name": "svm"}})
    assert "is not a window model" in missing_files(other, everything)


def test_weights_of_a_missing_fold_are_a_model_error(tmp_path: Path) -> None:
    d = shutil.copytree(BEFORE, tmp_path / "model")
    (d / weights_name(1)).unlink()
    with pytest.raises(ModelError, match="fold1.safetensors is missing"):
        CNNMember.load(d)
    with pytest.raises(ModelError, match="not fold 5"):
        ModelDir.load(d).weights(5)
