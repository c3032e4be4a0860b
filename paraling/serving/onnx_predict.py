"""``paraling predict --backend onnx``: an exported folder (:mod:`paraling.serving.export`) run with onnxruntime,
on audio decoded by paraling's one decoder, into the same prediction table as the PyTorch path."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from paraling.data.audio import load_audio
from paraling.errors import DependencyError, ModelError, ParalingError
from paraling.serving.predict import FilePrediction

__all__ = ["predict_onnx"]


def predict_onnx(folder: str | Path, paths: Sequence[str | Path]) -> tuple[list[str], list[FilePrediction]]:
    """``(classes, one prediction per file)``; a file that cannot be decoded gets ``error`` and the batch goes on.

    Raises:
        ModelError: ``folder`` is not a ``paraling export --format onnx`` folder.
        DependencyError: onnxruntime is not installed.
    """
    folder = Path(folder)
    if not (folder / "paraling-onnx.json").is_file():
        raise ModelError(f"{folder}: no paraling-onnx.json; --backend onnx runs a folder of `paraling export`")
    try:
        from paraling.serving.onnx_runtime import OnnxModel

        model = OnnxModel(folder)
    except ImportError as exc:
        raise DependencyError("--backend onnx needs onnxruntime: pip install 'paraling[onnx]'") from exc
    except (ValueError, KeyError, OSError) as exc:
        raise ModelError(f"{folder}: not a usable export ({exc}); export the model again") from None
    out = []
    for p in paths:
        pred = FilePrediction(str(p))
        try:
            wave = load_audio(p, model.sample_rate)
            pred.proba = model.predict_wave(wave)
            pred.label = model.classes[int(pred.proba.argmax())]
            pred.duration = len(wave) / model.sample_rate
        except (ParalingError, OSError, ValueError, RuntimeError) as exc:
            pred.error = str(exc)
        out.append(pred)
    return model.classes, out
