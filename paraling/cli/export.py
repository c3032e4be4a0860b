"""``paraling export``: a trained model as a folder that runs without PyTorch.

Example::

    paraling export runs:/<run id> --format onnx --out exported/
    python exported/predict.py exported/ a.wav            # numpy + onnxruntime + soundfile only
    paraling predict --backend onnx --model exported/ a.wav
"""

from __future__ import annotations

import argparse
import os
import tempfile

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``paraling export``."""
    p = argparse.ArgumentParser(prog="paraling export", description=__doc__.splitlines()[0])
    p.add_argument("model", help="run id, runs:/<id>, models:/<name>@<alias>, models:/<name>/<version>, or a folder")
    p.add_argument("--format", choices=["onnx"], default="onnx", help="onnx (the only format so far)")
    p.add_argument("--out", required=True, help="the folder to write (must not exist)")
    p.add_argument("--force", action="store_true", help="replace an earlier export at --out")
    p.add_argument("--tracking-uri", help="MLflow tracking/registry URI for run ids and models:/ URIs")
    return p


def main(argv: list[str]) -> int:
    """Entry point: prints the folder written; returns 0."""
    a = build_parser().parse_args(argv)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    from paraling.serving.export import export_onnx
    from paraling.serving.predict import Predictor
    from paraling.tracking.model_fetch import fetch_model

    with tempfile.TemporaryDirectory(prefix="paraling-export-") as tmp:
        name = a.model.removeprefix("runs:/").split("/")[0]
        predictor = Predictor.load(fetch_model(a.model, tmp, a.tracking_uri), "cpu", name)
        out = export_onnx(predictor, a.out, force=a.force)
    print(out)
    return 0
