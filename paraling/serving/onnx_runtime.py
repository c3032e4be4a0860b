"""Run a folder written by ``paraling export --format onnx`` with numpy and onnxruntime only (no torch, no paraling).

This file is copied into every exported folder as ``predict.py``::

    python predict.py EXPORT_DIR a.wav b.wav          # needs: numpy, onnxruntime, soundfile (scipy to resample)

The folder (format ``paraling-onnx``, version 1; docs/deploy.md) holds ``paraling-onnx.json`` and, per member and
fold, ``<member>/fold<k>.onnx`` (log-mel windows ``(n, 1, n_mels, width)`` -> window posteriors ``(n, n_classes)``)
with ``<member>/fold<k>.json`` (the fitted vote and the normalisation statistics). Prediction does what
``paraling predict`` does: Kaldi-compatible FBANK frames (:func:`kaldi_fbank`), windows of ``width`` frames every
``shift`` (short files padded by repeating edge frames), the member's normalisation, every fold's network and vote,
the folds' mean, and the members combined with their weights.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

FORMAT, VERSION = "paraling-onnx", 1
_EPS32 = float(np.finfo(np.float32).eps)


def _mel(f: np.ndarray) -> np.ndarray:
    return 1127.0 * np.log(1.0 + f / 700.0)


def mel_banks(n_mels: int, n_fft: int, sample_rate: float, low: float, high: float) -> np.ndarray:
    """Kaldi's triangular mel filters, ``(n_mels, n_fft // 2 + 1)`` (the last, Nyquist, column zero)."""
    nyquist = 0.5 * sample_rate
    if high <= 0.0:
        high += nyquist
    n_bins = n_fft // 2
    mel_low, mel_high = _mel(np.float64(low)), _mel(np.float64(high))
    delta = (mel_high - mel_low) / (n_mels + 1)
    b = np.arange(n_mels, dtype=np.float64)[:, None]
    left, center, right = mel_low + b * delta, mel_low + (b + 1) * delta, mel_low + (b + 2) * delta
    mel = _mel(sample_rate / n_fft * np.arange(n_bins, dtype=np.float64))[None, :]
    up, down = (mel - left) / (center - left), (right - mel) / (right - center)
    banks = np.maximum(0.0, np.minimum(up, down))
    return np.pad(banks, ((0, 0), (0, 1)))


def kaldi_fbank(wave: np.ndarray, spec: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """``(frames (n, n_mels), log energy (n,))`` as ``torchaudio.compliance.kaldi.fbank`` computes them for paraling
    (16-bit scale, no dither, DC removed, pre-emphasis 0.97, Povey window, power spectrum, log with float32 eps)."""
    sr = float(spec["sample_rate"])
    win, hop = round(sr * spec["frame_length_ms"] / 1000), round(sr * spec["frame_shift_ms"] / 1000)
    x = np.asarray(wave, dtype=np.float64) * 32768.0
    if len(x) < win:
        x = np.pad(x, (0, win - len(x)))
    n = 1 + (len(x) - win) // hop
    frames = np.lib.stride_tricks.sliding_window_view(x, win)[::hop][:n].copy()
    frames -= frames.mean(axis=1, keepdims=True)
    frames[:, 1:] -= 0.97 * frames[:, :-1].copy()
    frames[:, 0] -= 0.97 * frames[:, 0]
    frames *= (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(win) / (win - 1))) ** 0.85
    n_fft = 1 << (win - 1).bit_length()
    power = np.abs(np.fft.rfft(frames, n=n_fft, axis=1)) ** 2
    f_max = spec.get("f_max")
    banks = mel_banks(int(spec["n_mels"]), n_fft, sr, float(spec["f_min"]), float(f_max) if f_max else 0.0)
    feats = np.log(np.maximum(power @ banks.T, _EPS32)).astype(np.float32)
    top = feats.max(axis=1, keepdims=True)
    energy = (top[:, 0] + np.log(np.exp(feats - top).sum(axis=1))).astype(np.float32)
    return feats, energy


def windows(feats: np.ndarray, energy: np.ndarray, width: int, shift: int, normalize: str) -> tuple[np.ndarray, ...]:
    """``(windows (w, n_mels, width), centre energy (w,))`` of one file: short files padded with edge frames;
    ``normalize=utterance`` subtracts the file's mean per band."""
    n = len(feats)
    if n < width:
        reps = np.clip(np.minimum(np.arange(width) - (width - n) // 2, n - 1), 0, None)
        feats, energy = feats[reps], energy[reps]
    feats = np.asarray(feats, dtype=np.float32)
    if normalize == "utterance":
        feats = feats - feats.mean(axis=0, keepdims=True)
    starts = np.arange((len(feats) - width) // shift + 1) * shift
    view = np.lib.stride_tricks.sliding_window_view(feats, width, axis=0)  # (frames - width + 1, n_mels, width)
    return view[starts], energy[starts + width // 2]


def _normalise(s: np.ndarray) -> np.ndarray:
    total = s.sum(axis=1, keepdims=True)
    return np.divide(s, total, out=np.full_like(s, 1.0 / s.shape[1]), where=total > 0)


def vote(state: dict[str, Any], p: np.ndarray, energy: np.ndarray) -> np.ndarray:
    """One file's class probabilities from its window posteriors, by the fold's fitted vote (``fold<k>.json``)."""
    method, params, fitted = state["method"], state.get("params", {}), state.get("fitted", {})
    n_cls = p.shape[1]
    if method == "majority":
        return _normalise(np.bincount(p.argmax(1), minlength=n_cls)[None].astype(np.float64))[0]
    if method in ("mean", "logmean"):
        if method == "mean":
            return _normalise(p.mean(axis=0, keepdims=True))[0]
        m = np.log(np.maximum(p, float(params.get("eps", 1e-12)))).mean(axis=0)
        return _normalise(np.exp(m - m.max())[None])[0]
    if method not in ("weighted", "weighted_soft"):
        raise ValueError(f"vote {method!r} is not one paraling-onnx runs")
    coef, intercept = np.asarray(fitted["coef_"]), np.asarray(fitted["intercept_"])
    feats = p.astype(np.float64)
    if params.get("use_energy", True):
        e = (energy - float(fitted["energy_mean_"])) / float(fitted["energy_scale_"])
        feats = np.hstack([feats, e[:, None]])
    pred = p.argmax(1)
    w = np.clip(np.einsum("ij,ij->i", feats, coef[pred]) + intercept[pred], 0.0, None)
    if params.get("soft", method == "weighted_soft"):
        return _normalise((p * w[:, None]).sum(axis=0, keepdims=True))[0]
    return _normalise(np.bincount(pred, weights=w, minlength=n_cls)[None])[0]


def combine(stack: np.ndarray, weights: np.ndarray, method: str, eps: float = 1e-12) -> np.ndarray:
    """Members' probabilities ``(members, n_classes)`` combined as ``paraling.ensemble.combine`` does."""
    used = weights > 0
    w, s = weights[used], stack[used]
    if method in ("mean", "weighted"):
        out = np.tensordot(w, s, axes=1) / w.sum()
    elif method == "geometric":
        out = np.exp(np.tensordot(w, np.log(np.maximum(s, eps)), axes=1) / w.sum())
    elif method == "harmonic":
        out = w.sum() / np.tensordot(w, 1.0 / np.maximum(s, eps), axes=1)
    else:
        raise ValueError(f"combiner {method!r} is not one paraling-onnx runs")
    return _normalise(out[None])[0]


class OnnxModel:
    """An exported folder, loaded: :meth:`predict_wave` labels one waveform at the model's sample rate.

    Args:
        folder: The folder ``paraling export --format onnx`` wrote.
        providers: onnxruntime execution providers (default: the CPU).
    """

    def __init__(self, folder: str | Path, providers: list[str] | None = None) -> None:
        import onnxruntime as ort

        self.folder = Path(folder)
        self.spec = json.loads((self.folder / "paraling-onnx.json").read_text(encoding="utf-8"))
        if self.spec.get("format") != FORMAT or int(self.spec.get("version", 0)) > VERSION:
            raise ValueError(f"{self.folder}: not a {FORMAT} folder of version <= {VERSION}")
        self.classes: list[str] = list(self.spec["classes"])
        opts = {"providers": providers or ["CPUExecutionProvider"]}
        self.sessions = [
            [ort.InferenceSession(str(self.folder / f["onnx"]), **opts) for f in m["folds"]]
            for m in self.spec["members"]
        ]
        self.states = [
            [json.loads((self.folder / f["state"]).read_text(encoding="utf-8")) for f in m["folds"]]
            for m in self.spec["members"]
        ]

    @property
    def sample_rate(self) -> int:
        """The rate every member's features expect."""
        return int(self.spec["members"][0]["features"]["sample_rate"])

    def member_proba(self, j: int, wave: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Member ``j``'s ``(class probabilities, window posteriors of its first fold)`` of one waveform."""
        m = self.spec["members"][j]
        feats, energy = kaldi_fbank(wave, m["features"])
        win, e = windows(feats, energy, int(m["windows"]["width"]), int(m["windows"]["shift"]), m["normalize"])
        proba, first = np.zeros(len(self.classes)), None
        for session, state in zip(self.sessions[j], self.states[j], strict=True):
            x = win
            if state.get("norm"):
                x = (x - np.asarray(state["norm"]["mean"])[:, None]) / np.asarray(state["norm"]["std"])[:, None]
            p = session.run(None, {session.get_inputs()[0].name: x[:, None].astype(np.float32)})[0]
            first = p if first is None else first
            proba += vote(state["aggregation"], p.astype(np.float64), e)
        return proba / len(self.sessions[j]), first if first is not None else np.zeros((0, len(self.classes)))

    def predict_wave(self, wave: np.ndarray) -> np.ndarray:
        """Class probabilities ``(n_classes,)`` of one mono waveform at :attr:`sample_rate`."""
        stack = np.stack([self.member_proba(j, wave)[0] for j in range(len(self.sessions))])
        weights = np.asarray([m.get("weight", 1) for m in self.spec["members"]], dtype=np.float64)
        return combine(stack, weights, str(self.spec.get("combiner", "mean")))


def read_wave(path: str, sample_rate: int) -> np.ndarray:
    """A mono float waveform at ``sample_rate`` (soundfile; scipy's polyphase resampler when the rate differs)."""
    import soundfile as sf

    wave, sr = sf.read(path, dtype="float32", always_2d=True)
    wave = wave.mean(axis=1)
    if sr != sample_rate:
        from math import gcd

        from scipy.signal import resample_poly

        g = gcd(int(sr), int(sample_rate))
        wave = resample_poly(wave, sample_rate // g, int(sr) // g).astype(np.float32)
    return wave


def main(argv: list[str]) -> int:
    """``python predict.py EXPORT_DIR FILE...``: one ``file<TAB>label<TAB>probabilities`` line per file."""
    if len(argv) < 2:
        print("usage: python predict.py EXPORT_DIR FILE [FILE ...]", file=sys.stderr)
        return 2
    model = OnnxModel(argv[0])
    for path in argv[1:]:
        proba = model.predict_wave(read_wave(path, model.sample_rate))
        print(f"{path}\t{model.classes[int(proba.argmax())]}\t" + " ".join(f"{v:.6f}" for v in proba))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
