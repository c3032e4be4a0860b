"""``paraling export --format onnx``: a trained model (a run, a registered model or ensemble) as a folder that runs
without PyTorch (:mod:`paraling.serving.onnx_runtime`, copied in as ``predict.py``).

Per member and fold: the network from normalised log-mel windows to window posteriors as ONNX (the number of windows
is dynamic) and the fold's fitted vote and normalisation statistics (``fold<k>.json``, the run's own format); one
``paraling-onnx.json`` names the members, their weights, the combiner, the feature specification (so the frames can
be reproduced), window width and shift, and the classes. The log-mel front-end is not in the graph: ``predict.py``
computes Kaldi-compatible FBANK in numpy (within 1e-4 of torchaudio's). The folder is written under a temporary
name and renamed when complete.
"""

from __future__ import annotations

import copy
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from paraling.errors import DependencyError, ModelError
from paraling.scoring.aggregation_state import fold_state
from paraling.serving.onnx_runtime import FORMAT, VERSION
from paraling.serving.predict import CNNMember, Predictor

__all__ = ["OPSET", "export_onnx"]

#: The ONNX opset written: supported by every onnxruntime release since 1.14 (2023).
OPSET = 18


class _Posteriors(torch.nn.Module):
    """A window model with a softmax on top: windows ``(n, 1, n_mels, width)`` -> posteriors ``(n, n_classes)``."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.model(x), dim=1)


def _export_network(model: torch.nn.Module, n_mels: int, width: int, path: Path) -> None:
    import logging
    import warnings

    logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # "torchvision is not installed" lines: not our ops
    net: Any = copy.deepcopy(model).float().eval()
    if hasattr(net, "kernels"):
        net.kernels = "plain"  # the textbook torch modules: no native CPU kernels in the graph
    example = (torch.zeros(2, 1, n_mels, width),)
    batch = torch.export.Dim("windows", min=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's notes on its own API
        try:
            _onnx_export(net, example, batch, path)
        except ImportError as exc:
            raise DependencyError(f"ONNX export needs {exc.name or 'onnx'}: pip install 'paraling[onnx]'") from exc


def _onnx_export(net: torch.nn.Module, example: tuple[torch.Tensor], batch: Any, path: Path) -> None:
    torch.onnx.export(
        _Posteriors(net),
        example,
        str(path),
        input_names=["windows"],
        output_names=["posteriors"],
        dynamic_shapes=({0: batch},),
        opset_version=OPSET,
        dynamo=True,
        verbose=False,
    )


def _member(member: CNNMember, j: int, out: Path) -> dict[str, Any]:
    features = dict(member.spec["features"])
    if features.get("kind") != "fbank":
        raise ModelError(
            f"member {member.name}: features.kind={features.get('kind')!r}; ONNX export covers members on FBANK "
            "features (kind fbank) in this version"
        )
    folder = out / f"member{j}"
    folder.mkdir()
    folds = []
    for f in member.folds:
        onnx, state = folder / f"fold{f.fold}.onnx", folder / f"fold{f.fold}.json"
        _export_network(f.model, int(member.spec["n_mels"]), member.width, onnx)
        state.write_text(json.dumps(fold_state(member.method, f.aggregator, f.mean, f.std), indent=1))
        folds.append({"fold": f.fold, "onnx": f"member{j}/{onnx.name}", "state": f"member{j}/{state.name}"})
    return {
        "name": member.name,
        "features": {
            k: features.get(k)
            for k in ("kind", "sample_rate", "n_mels", "frame_length_ms", "frame_shift_ms", "f_min", "f_max")
        },
        "normalize": member.normalize,
        "windows": {"width": member.width, "shift": member.shift, "short_policy": member.short_policy},
        "aggregation": member.method,
        "precision_trained": member.spec.get("precision", "fp32"),
        "folds": folds,
    }


def export_onnx(predictor: Predictor, out: str | Path, force: bool = False) -> Path:
    """Write ``predictor``'s members as a ``paraling-onnx`` folder at ``out``; returns ``out``.

    Raises:
        ModelError: A member this format does not cover (features other than FBANK), or ``out`` exists (without
            ``force``).
    """
    out = Path(out)
    if out.exists() and not (force and (out / "paraling-onnx.json").is_file()):
        raise ModelError(f"{out} exists; choose a new folder (or --force to replace an earlier export)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        members = [_member(m, j, tmp) for j, m in enumerate(predictor.members)]
        for m, w in zip(members, predictor.weights.tolist(), strict=True):
            m["weight"] = w
        spec = {"format": FORMAT, "version": VERSION, "opset": OPSET, "classes": list(predictor.classes)}
        spec |= {"combiner": predictor.combiner, "members": members}
        (tmp / "paraling-onnx.json").write_text(json.dumps(spec, indent=1))
        shutil.copy(Path(__file__).with_name("onnx_runtime.py"), tmp / "predict.py")
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
