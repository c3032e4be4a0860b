"""``paraling export --format onnx`` and ``paraling predict --backend onnx`` against the PyTorch path on the demo
corpus: a CNN with the paper's Ridge-weighted vote, one with the mean vote, and a registered harmonic-mean ensemble
of both. Window posteriors agree within 1e-4, utterance labels exactly; the exported folder also runs in a fresh
environment with numpy and onnxruntime but no torch."""

from __future__ import annotations

import json
import subprocess
import venv
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import paraling
from paraling.cli.main import main as cli_main
from paraling.errors import ModelError
from paraling.pipeline.experiment import run_experiment
from paraling.serving.onnx_runtime import OnnxModel, kaldi_fbank, windows
from paraling.serving.predict import Predictor
from paraling.tracking.model_fetch import fetch_model

TOL = 1e-4  # fp32 ONNX against fp32 PyTorch: summation order only


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Two tiny fp32 runs on a 4-speaker demo corpus and their registered ensemble, in one MLflow store."""
    root = tmp_path_factory.mktemp("onnx")
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    base = ["corpus=demo", "corpus.demo_speakers=4", f"corpus.path={root / 'demo'}", f"cache_dir={root / 'cache'}"]
    base += ["cv.folds=2", "trainer.epochs=2", "model.channels=[8,8,8]", "model.fc_sizes=[32]", "progress=never"]
    base += ["trainer.precision=fp32", "device=cpu", "trainer.checkpoint=false"]
    runs = {
        agg: run_experiment(paraling.compose([*base, f"aggregation={agg}", f"name={agg}"])).run_id
        for agg in ("weighted", "mean")
    }
    paraling.assemble_ensemble(run_ids=list(runs.values()), method="all", combiner="harmonic", register="onnxmix")
    wavs = sorted((root / "demo" / "wav").rglob("*.wav"))
    yield {"root": root, "runs": runs, "wavs": wavs}
    mp.undo()


def _export(model: str, out: Path) -> Path:
    assert cli_main(["export", model, "--format", "onnx", "--out", str(out)]) == 0
    return out


def _torch_predictor(model: str, tmp: Path) -> Predictor:
    return Predictor.load(fetch_model(model, tmp), "cpu")


@pytest.mark.parametrize("which", ["weighted", "mean", "ensemble"])
def test_exported_model_gives_the_pytorch_paths_labels(
    which: str, trained: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = "models:/onnxmix@champion" if which == "ensemble" else f"runs:/{trained['runs'][which]}"
    out = _export(model, tmp_path / "exported")
    spec = json.loads((out / "paraling-onnx.json").read_text())
    assert spec["format"] == "paraling-onnx" and len(spec["members"]) == (2 if which == "ensemble" else 1)
    assert spec["combiner"] == ("harmonic" if which == "ensemble" else "mean") and (out / "predict.py").is_file()
    predictor, onnx = _torch_predictor(model, tmp_path / "m"), OnnxModel(out)
    # the network: the same windows through PyTorch and onnxruntime, every fold of every member
    wave = paraling_wave(trained["wavs"][0])
    for j, member in enumerate(predictor.members):
        m = spec["members"][j]
        feats, energy = kaldi_fbank(wave, m["features"])
        win, _ = windows(feats, energy, member.width, member.shift, member.normalize)
        for fold, session in zip(member.folds, onnx.sessions[j], strict=True):
            x = torch.from_numpy(np.ascontiguousarray(win, dtype=np.float32))
            if fold.mean is not None:
                x = (x - fold.mean[:, None]) / fold.std[:, None]
            with torch.no_grad():
                expected = torch.softmax(fold.model(x[:, None]), dim=1).numpy()
            got = session.run(None, {"windows": x[:, None].numpy()})[0]
            assert got.shape == expected.shape and np.abs(got - expected).max() < TOL
    # end to end: labels exactly, probabilities within the tolerance, through `paraling predict` both ways
    wavs = [str(w) for w in trained["wavs"]]
    torch_out, onnx_out = tmp_path / "torch.csv", tmp_path / "onnx.csv"
    assert cli_main(["predict", "--model", model, *wavs, "--out", str(torch_out)]) == 0
    assert cli_main(["predict", "--backend", "onnx", "--model", str(out), *wavs, "--out", str(onnx_out)]) == 0
    a, b = _table(torch_out), _table(onnx_out)
    assert [r[1] for r in a] == [r[1] for r in b] and len(a) == len(wavs)
    assert max(abs(x - y) for ra, rb in zip(a, b, strict=True) for x, y in zip(ra[2], rb[2], strict=True)) < TOL


def paraling_wave(path: Path) -> np.ndarray:
    from paraling.data.audio import load_audio

    return load_audio(path, 16000)


def _table(path: Path) -> list[tuple[str, str, list[float]]]:
    import csv

    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    probs = [k for k in rows[0] if k.startswith("proba_")]
    return [(r["path"], r["label"], [float(r[k]) for k in probs]) for r in rows]


def test_export_and_onnx_predict_refuse_what_they_cannot_use(
    trained: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = f"runs:/{trained['runs']['mean']}"
    out = _export(model, tmp_path / "e")
    with pytest.raises(SystemExit):
        cli_main(["export", model, "--out", str(out)])
    assert "exists; choose a new folder (or --force" in capsys.readouterr().err
    assert cli_main(["export", model, "--out", str(out), "--force"]) == 0
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".e.")], "no half-written folder left"
    from paraling.serving.onnx_predict import predict_onnx

    with pytest.raises(ModelError, match="no paraling-onnx.json; --backend onnx runs a folder of `paraling export`"):
        predict_onnx(tmp_path, [str(trained["wavs"][0])])
    classes, preds = predict_onnx(out, [str(tmp_path / "missing.wav"), str(trained["wavs"][0])])
    assert preds[0].error and preds[1].label in classes


@pytest.mark.slow
def test_the_exported_folder_runs_without_torch(trained: dict[str, Any], tmp_path: Path) -> None:
    out = _export("models:/onnxmix@champion", tmp_path / "exported")
    env = tmp_path / "env"
    venv.create(env, with_pip=True)
    py = env / "bin" / "python"
    pip = [str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", "numpy", "onnxruntime", "soundfile"]
    subprocess.run([*pip, "scipy"], check=True, timeout=600, capture_output=True)
    no_torch = subprocess.run([str(py), "-c", "import torch"], capture_output=True, text=True)
    assert no_torch.returncode != 0 and "No module named 'torch'" in no_torch.stderr
    wavs = [str(w) for w in trained["wavs"][:12]]
    run = subprocess.run(
        [str(py), str(out / "predict.py"), str(out), *wavs], capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr[-2000:]
    labels = [line.split("\t")[1] for line in run.stdout.strip().splitlines()]
    expected = [p.label for p in _torch_predictor("models:/onnxmix@champion", tmp_path / "m").predict(wavs)]
    assert labels == expected
