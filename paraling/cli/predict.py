"""``paraling predict``: labels and class probabilities of audio files, optionally with explanations.

Example::

    paraling predict --model models:/eating@champion a.wav b.flac --out preds.csv --explain why/
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``paraling predict``."""
    p = argparse.ArgumentParser(
        prog="paraling predict",
        description="Label audio files with a trained paraling model. Unreadable files are reported in the "
        "output (column 'error'); the exit status is 1 only when no file could be predicted.",
    )
    p.add_argument(
        "--model",
        required=True,
        help="run id, runs:/<id>, models:/<name>@<alias>, models:/<name>/<version>, or a local folder",
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="audio files (any rate, mono or multi-channel)")
    p.add_argument("--out", help="write .csv or .json (default: CSV on stdout)")
    p.add_argument(
        "--explain",
        metavar="DIR",
        help="write the Figure-3 view per file (PNG) and segments.json with indicative segments",
    )
    p.add_argument("--tracking-uri", help="MLflow tracking/registry URI for run ids and models:/ URIs")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or auto")
    p.add_argument(
        "--backend",
        choices=["torch", "onnx"],
        default="torch",
        help="torch (default), or onnx: --model is a folder written by `paraling export --format onnx`, run with "
        "onnxruntime",
    )
    p.add_argument("--force", action="store_true", help="overwrite an --out file that is not a prediction table")
    return p


def main(argv: list[str]) -> int:
    """Entry point; returns 0 when at least one file was predicted, else 1."""
    a = build_parser().parse_args(argv)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    from paraling.device import resolve_device
    from paraling.errors import ConfigError
    from paraling.serving.outputs import check_explain_dir, check_out
    from paraling.serving.predict import Predictor
    from paraling.tracking.model_fetch import fetch_model

    resolve_device(a.device)  # before anything is downloaded or predicted: bad targets fail first
    check_out(a.out, a.files, a.force)
    check_explain_dir(a.explain)
    if a.backend == "onnx":
        from paraling.serving.onnx_predict import predict_onnx

        if a.explain:
            raise ConfigError("--explain needs --backend torch (the per-window view comes from the PyTorch path)")
        classes, preds = predict_onnx(a.model, a.files)
        return _report(a, preds, classes)
    with tempfile.TemporaryDirectory(prefix="paraling-predict-") as tmp:
        name = a.model.removeprefix("runs:/").split("/")[0]
        predictor = Predictor.load(fetch_model(a.model, tmp, a.tracking_uri), a.device, name)
        preds = predictor.predict(a.files, details=bool(a.explain))
    if a.explain:
        from paraling.serving.explain import explain_predictions

        for row in explain_predictions(predictor, preds, a.explain):
            segs = ", ".join(f"{s['start']:.2f}-{s['end']:.2f}s" for s in row.get("segments", []))
            if "label" in row:
                print(f"{row['path']}: {row['label']}; most indicative: {segs or 'none'}", file=sys.stderr)
    return _report(a, preds, predictor.classes)


def _report(a: argparse.Namespace, preds: list, classes: list[str]) -> int:
    """Write the prediction table, name the files that failed; 0 when at least one file was predicted."""
    from paraling.serving.predict import predictions_frame, write_predictions

    write_predictions(predictions_frame(preds, classes), a.out)
    failed = [p for p in preds if p.error]
    for p in failed:
        print(f"paraling: cannot predict {p.path}: {p.error}", file=sys.stderr)
    print(f"paraling: predicted {len(preds) - len(failed)} of {len(preds)} file(s)", file=sys.stderr)
    return 0 if len(failed) < len(preds) else 1
