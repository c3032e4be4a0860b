"""Tests of paraling.serving.predict, paraling.serving.explain and `paraling predict` on hand-made model folders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors.torch import save_file

from paraling.cli.main import main as cli_main
from paraling.ensemble import combine
from paraling.errors import ModelError
from paraling.models.cnn import WindowCNN
from paraling.scoring.aggregation import METHODS, make_aggregator
from paraling.scoring.aggregation_state import aggregator_from_state, aggregator_state, fold_state
from paraling.serving.explain import indicative_segments
from paraling.serving.predict import Predictor, predictions_frame
from paraling.tracking.bundle import save_bundle

CLASSES = ["high", "low", "noise"]
MODEL = {
    "name": "cnn",
    "n_blocks": 2,
    "channels": [4, 4],
    "kernel_sizes": [3, 2],
    "pool_size": 2,
    "dropout_conv": [0.0, 0.0],
    "fc_sizes": [8],
    "dropout_fc": 0.0,
}
FEATURES = {
    "kind": "fbank",
    "sample_rate": 16000,
    "n_mels": 20,
    "frame_length_ms": 25.0,
    "frame_shift_ms": 10.0,
    "f_min": 20.0,
    "f_max": None,
    "normalize": "utterance",
    "cache": False,
}


def _fitted(method: str, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.dirichlet(np.ones(3), size=200)
    y = rng.integers(0, 3, size=200)
    params = {"alpha": 0.5, "use_energy": True} if method == "weighted" else {}
    return make_aggregator(method, **params).fit(X, y, None, rng.normal(20, 2, size=200)), X, rng


def make_member(
    root: Path,
    seed: int = 0,
    method: str = "weighted",
    short_policy: str = "pad",
    normalize: str = "utterance",
    width: int = 11,
) -> Path:
    """A run's model/ folder with two random fold CNNs and fitted votes, as `paraling train` logs it."""
    root.mkdir(parents=True)
    torch.manual_seed(seed)
    for k in (0, 1):
        model = WindowCNN(20, width, 3, [4, 4], [3, 2], [0.0, 0.0], [8], 0.0)
        weights = {n: t.contiguous() for n, t in model.state_dict().items()}
        save_file(weights, str(root / f"fold{k}.safetensors"))
        agg, _, _ = _fitted(method, seed + k)
        mean = std = None
        if normalize == "global":
            mean, std = torch.full((20,), 10.0), torch.full((20,), 3.0)
        (root / f"fold{k}.json").write_text(json.dumps(fold_state(method, agg, mean, std)))
    spec = {
        "classes": CLASSES,
        "features": {**FEATURES, "normalize": normalize},
        "windows": {"width": width, "shift": 2, "short_policy": short_policy},
        "model": MODEL,
        "aggregation": {"method": method, "ridge_alpha": 0.5, "use_energy": True},
        "n_mels": 20,
        "folds": [0, 1],
        "layer_names": ["conv1", "conv2", "fc1", "out"],
    }
    (root / "spec.json").write_text(json.dumps(spec))
    return root


@pytest.fixture(scope="module")
def audio(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("audio")
    rng = np.random.default_rng(0)
    t = np.arange(8000) / 16000
    files = {
        "tone": d / "tone.wav",
        "noise": d / "noise.flac",
        "empty": d / "empty.wav",
        "text": d / "text.wav",
        "missing": d / "missing.wav",
        "short": d / "short.wav",
        "stereo": d / "stereo44k.wav",
        "mono44": d / "mono44k.wav",
    }
    sf.write(files["tone"], 0.3 * np.sin(2 * np.pi * 440 * t), 16000)
    sf.write(files["noise"], rng.normal(0, 0.1, 12000), 16000)
    files["empty"].write_bytes(b"")
    files["text"].write_text("this is not audio")
    sf.write(files["short"], rng.normal(0, 0.1, 800), 16000)  # 50 ms: 3 frames
    t44 = np.arange(int(0.6 * 44100)) / 44100
    left, right = 0.4 * np.sin(2 * np.pi * 300 * t44), 0.2 * np.sin(2 * np.pi * 2000 * t44)
    sf.write(files["stereo"], np.stack([left, right], 1), 44100, subtype="FLOAT")
    sf.write(files["mono44"], (left + right) / 2, 44100, subtype="FLOAT")
    return files


@pytest.mark.parametrize("method", METHODS)
def test_aggregator_state_round_trip(method: str) -> None:
    agg, X, rng = _fitted(method)
    state = json.loads(json.dumps(aggregator_state(method, agg)))
    back = aggregator_from_state(state)
    groups, energy = rng.integers(0, 7, size=len(X)), rng.normal(20, 2, size=len(X))
    np.testing.assert_allclose(back.predict_proba(X, groups, energy, 7), agg.predict_proba(X, groups, energy, 7))
    with pytest.raises(ModelError, match="aggregator state"):
        aggregator_from_state({"params": {}})


def test_indicative_segments() -> None:
    c = np.array([0.0, 0.2, 1.0, 0.8, 0.0, 0.0, 0.7, 0.1])
    begin = np.arange(8) * 0.1
    segs = indicative_segments(c, begin, begin + 0.15, top=3)
    assert segs == [{"start": 0.2, "end": 0.45, "score": 1.8}, {"start": 0.6, "end": 0.75, "score": 0.7}]
    assert indicative_segments(np.zeros(4), begin[:4], begin[:4] + 1) == []
    assert indicative_segments(np.zeros(0), begin[:0], begin[:0]) == []


def test_predict_batch_with_bad_files(tmp_path: Path, audio: dict[str, Path]) -> None:
    p = Predictor.load(make_member(tmp_path / "m", normalize="global"))
    order = ["tone", "empty", "noise", "text", "missing", "short", "stereo", "mono44"]
    rows = p.predict([audio[k] for k in order])
    by = dict(zip(order, rows, strict=True))
    for k in ("tone", "noise", "short", "stereo", "mono44"):
        assert by[k].error is None and by[k].label in CLASSES
        assert by[k].proba.sum() == pytest.approx(1.0)
    assert "empty" in by["empty"].error and "cannot be decoded" in by["text"].error
    assert "does not exist" in by["missing"].error
    # stereo 44.1 kHz is mixed down and resampled exactly as in training: same as its mono mix-down
    np.testing.assert_allclose(by["stereo"].proba, by["mono44"].proba, atol=1e-6)
    assert by["stereo"].duration == pytest.approx(0.6, abs=1e-3)
    frame = predictions_frame(rows, p.classes)
    assert list(frame.columns) == ["path", "label", "error", "proba_high", "proba_low", "proba_noise"]
    assert frame["proba_low"].isna().sum() == 3


def test_chunking_does_not_change_results(tmp_path: Path, audio: dict[str, Path]) -> None:
    p = Predictor.load(make_member(tmp_path / "m"))
    files = [audio[k] for k in ("tone", "noise", "empty", "stereo")]
    whole = p.predict(files)
    one = p.predict(files, chunk=1)
    for a, b in zip(whole, one, strict=True):
        assert a.error == b.error
        if a.proba is not None:
            np.testing.assert_allclose(a.proba, b.proba, atol=1e-6)


def test_short_file_under_skip_policy_is_reported(tmp_path: Path, audio: dict[str, Path]) -> None:
    p = Predictor.load(make_member(tmp_path / "m", short_policy="skip"))
    short, tone = p.predict([audio["short"], audio["tone"]])
    assert "shorter than the 11-frame window" in short.error and tone.error is None


def test_bundle_combines_members(tmp_path: Path, audio: dict[str, Path]) -> None:
    a = make_member(tmp_path / "a", seed=1)
    b = make_member(tmp_path / "b", seed=2, method="logmean", width=9)
    bundle = save_bundle(tmp_path / "bundle", [("run-a", "a", a, 2), ("run-b", "b", b, 1)], "harmonic")
    files = [audio["tone"], audio["noise"]]
    got = np.stack([r.proba for r in Predictor.load(bundle).predict(files)])
    pa = np.stack([r.proba for r in Predictor.load(a).predict(files)])
    pb = np.stack([r.proba for r in Predictor.load(b).predict(files)])
    np.testing.assert_allclose(got, combine(np.stack([pa, pb]), [2, 1], "harmonic"), atol=1e-6)
    pyfunc_like = tmp_path / "pyfunc" / "artifacts"
    pyfunc_like.mkdir(parents=True)
    (bundle).rename(pyfunc_like / "bundle")
    assert Predictor.load(tmp_path / "pyfunc").combiner == "harmonic"


def test_member_errors(tmp_path: Path) -> None:
    m = make_member(tmp_path / "m")
    (m / "fold1.json").unlink()
    with pytest.raises(ModelError, match="fitted weighted vote of fold 1 was not saved"):
        Predictor.load(m)
    with pytest.raises(ModelError, match="not a paraling model"):
        Predictor.load(tmp_path)
    g = make_member(tmp_path / "g", method="majority", normalize="global")
    (g / "fold0.json").unlink()
    with pytest.raises(ModelError, match="normalize=global"):
        Predictor.load(g)
    w = make_member(tmp_path / "w", width=9)
    spec = json.loads((w / "spec.json").read_text())
    spec["windows"]["width"] = 21
    (w / "spec.json").write_text(json.dumps(spec))
    with pytest.raises(ModelError, match="does not fit its spec.json"):
        Predictor.load(w)


def test_cli_predict_outputs_explain_and_exit_status(
    tmp_path: Path, audio: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    m = make_member(tmp_path / "m")
    out = tmp_path / "preds.json"
    files = [str(audio[k]) for k in ("tone", "empty", "stereo")]
    assert cli_main(["predict", "--model", str(m), *files, "--out", str(out), "--explain", str(tmp_path / "why")]) == 0
    rows = json.loads(out.read_text())
    assert [r["path"] for r in rows] == files
    assert rows[1]["error"] and rows[1]["proba_low"] is None and rows[0]["label"] in CLASSES
    assert sorted(p.name for p in (tmp_path / "why").glob("*.png")) == ["stereo44k.png", "tone.png"]
    seg = json.loads((tmp_path / "why" / "segments.json").read_text())
    assert seg[0]["segments"] and seg[0]["segments"][0]["end"] <= 0.5 + 1e-9
    assert "error" in seg[1]
    err = capsys.readouterr().err
    assert "cannot predict" in err and "predicted 2 of 3 file(s)" in err
    assert (
        cli_main(
            ["predict", "--model", str(m), str(audio["text"]), str(audio["empty"]), "--out", str(tmp_path / "p.csv")]
        )
        == 1
    )
    header = (tmp_path / "p.csv").read_text().splitlines()[0]
    assert header == "path,label,error,proba_high,proba_low,proba_noise"
    with pytest.raises(SystemExit) as exc:
        cli_main(["predict", "--model", str(tmp_path / "nothing"), str(audio["tone"])])
    assert exc.value.code == 2


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda s: s["aggregation"]["fitted"].update(predict_proba=1), "'predict_proba' is not a learned attribute"),
        (lambda s: s["aggregation"]["fitted"].update(fit="x"), "'fit' is not a learned attribute"),
        (lambda s: s["aggregation"]["params"].update(evil=1), "unexpected parameter evil=1"),
        (lambda s: s["aggregation"].update(method="nope"), "unknown method 'nope'"),
        (lambda s: s["aggregation"]["fitted"].update(n_classes_="3"), "n_classes_ must be a whole number"),
        (lambda s: s["aggregation"]["fitted"].update(coef_={"a": 1}), "coef_ has a value of type dict"),
        (lambda s: s.update(norm={"mean": [0.0], "std": [1.0]}), "'norm' must hold 20 numbers"),
        (lambda s: s.update(aggregation=7), "expected an object with a 'method' name"),
    ],
)
def test_a_tampered_fold_file_is_one_model_error(tmp_path: Path, edit, message: str) -> None:
    m = make_member(tmp_path / "m")
    state = json.loads((m / "fold0.json").read_text())
    edit(state)
    (m / "fold0.json").write_text(json.dumps(state))
    with pytest.raises(ModelError, match=message):
        Predictor.load(m)


def test_damaged_json_is_one_model_error(tmp_path: Path) -> None:
    m = make_member(tmp_path / "m")
    (m / "fold0.json").write_text("{not json")
    with pytest.raises(ModelError, match="fold0.json: not readable JSON"):
        Predictor.load(m)
    (m / "spec.json").write_text('{"classes": 3}')
    with pytest.raises(ModelError, match="spec.json: not a valid paraling spec"):
        Predictor.load(m)


@pytest.mark.parametrize("sub", ["../../../../etc", "/etc", "model/../../x", "model/./.."])
def test_runs_uri_paths_stay_inside_the_run(tmp_path: Path, sub: str) -> None:
    from paraling.tracking.model_fetch import fetch_model

    with pytest.raises(ModelError, match="leaves the run's artifacts"):
        fetch_model(f"runs:/0123456789abcdef0123456789abcdef/{sub}", tmp_path / "dl")
    assert not (tmp_path / "dl").exists()  # nothing downloaded, nothing left


def test_predict_never_runs_the_code_of_a_pyfunc_model(tmp_path: Path, audio: dict[str, Path]) -> None:
    """A pyfunc model folder carries `paraling_model.py`; paraling predict reads JSON and safetensors only."""
    member = make_member(tmp_path / "member")
    pyfunc = tmp_path / "pyfunc"
    (pyfunc / "artifacts").mkdir(parents=True)
    save_bundle(pyfunc / "artifacts" / "bundle", [("r1", "m1", member, 1)], "mean")
    marker = tmp_path / "ran"
    (pyfunc / "paraling_model.py").write_text(f"open({str(marker)!r}, 'w').write('code ran')\n")
    (pyfunc / "MLmodel").write_text("flavors:\n  python_function:\n    loader_module: mlflow.pyfunc.model\n")
    predictor = Predictor.load(pyfunc)
    assert not marker.exists() and predictor.classes == CLASSES
