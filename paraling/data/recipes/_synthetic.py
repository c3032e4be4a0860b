"""Machinery shared by the synthetic corpora (:mod:`.demo`, :mod:`.langid`).

A synthetic recipe *plans* every utterance (cheap: all random draws that end up in the CSV) and *renders* each plan
to a waveform (synthesis, noise, mixing). :func:`build_corpus` does the rest the same way for every recipe:

* determinism: every plan carries its own seed tuple, so an utterance is a pure function of the recipe parameters
  and its position, whatever the process or the order it is rendered in;
* atomic output: the corpus is written into ``.<name>.partial`` next to ``out_dir`` and renamed into place once
  the CSV and the ``.complete`` marker (the parameters, as JSON) are written;
* resumable: WAVs already rendered in a partial folder with the same parameters are kept; a finished corpus with
  the same parameters is returned at once, one with other parameters raises :class:`CorpusError`.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import multiprocessing
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from scipy.signal import butter, sosfilt

from paraling.atomic import atomic_path
from paraling.data.manifest import atomic_write_text
from paraling.errors import ConfigError, CorpusError

__all__ = [
    "Plan",
    "active_rms",
    "bandpass",
    "build_corpus",
    "highpass",
    "lowpass",
    "pink_noise",
    "rng_for",
]

log = logging.getLogger(__name__)

MARKER = ".complete"
_PARAMS = ".params.json"


@dataclass(frozen=True)
class Plan:
    """One utterance to render: its id, its CSV row and whatever the recipe's renderer needs."""

    uid: str
    row: dict[str, Any]
    spec: dict[str, Any] = field(default_factory=dict)


def rng_for(seed: int, *keys: int) -> np.random.Generator:
    """A generator seeded from ``(seed, *keys)``: independent streams per speaker/utterance/purpose."""
    return np.random.default_rng([int(seed), *(int(k) for k in keys)])


# ---------------------------------------------------------------------------------------------------------- DSP


def _sos_filter(x: np.ndarray, sos: np.ndarray) -> np.ndarray:
    return sosfilt(sos, x).astype(np.float32, copy=False)


def bandpass(x: np.ndarray, lo: float, hi: float, sample_rate: int, order: int = 2) -> np.ndarray:
    """Butterworth band-pass of ``x`` (shape ``(time,)``); edges are clipped into (20 Hz, 0.95 * Nyquist)."""
    nyq = sample_rate / 2
    lo = float(np.clip(lo, 20.0, 0.9 * nyq))
    hi = float(np.clip(hi, lo * 1.1, 0.95 * nyq))
    return _sos_filter(x, butter(order, [lo, hi], btype="bandpass", fs=sample_rate, output="sos"))


def lowpass(x: np.ndarray, cutoff: float, sample_rate: int, order: int = 2) -> np.ndarray:
    """Butterworth low-pass of ``x`` (shape ``(time,)``)."""
    cutoff = float(np.clip(cutoff, 20.0, 0.95 * sample_rate / 2))
    return _sos_filter(x, butter(order, cutoff, btype="lowpass", fs=sample_rate, output="sos"))


def highpass(x: np.ndarray, cutoff: float, sample_rate: int, order: int = 2) -> np.ndarray:
    """Butterworth high-pass of ``x`` (shape ``(time,)``)."""
    cutoff = float(np.clip(cutoff, 20.0, 0.95 * sample_rate / 2))
    return _sos_filter(x, butter(order, cutoff, btype="highpass", fs=sample_rate, output="sos"))


def pink_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS 1/f noise of ``n`` samples (white noise shaped in the frequency domain)."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(spec.size, dtype=np.float64)
    f[0] = 1.0
    x = np.fft.irfft(spec / np.sqrt(f), n)
    return (x / (np.sqrt(np.mean(x**2)) + 1e-12)).astype(np.float32)


def active_rms(x: np.ndarray, sample_rate: int, floor_db: float = -35.0) -> float:
    """RMS over the 20 ms frames within ``floor_db`` of the loudest frame (i.e. ignoring pauses)."""
    hop = max(1, sample_rate // 50)
    n = x.size // hop
    if n == 0:
        return float(np.sqrt(np.mean(x**2)) + 1e-12)
    power = np.mean(x[: n * hop].reshape(n, hop).astype(np.float64) ** 2, axis=1)
    keep = power >= power.max() * 10 ** (floor_db / 10)
    return float(np.sqrt(power[keep].mean()) + 1e-12)


# ---------------------------------------------------------------------------------------------------------- I/O


def _write_wav(path: Path, wave: np.ndarray, sample_rate: int) -> None:
    """Write 16-bit PCM mono WAV atomically (temp file + rename, so a present file is a complete file)."""
    pcm = np.round(np.clip(wave, -1.0, 32767 / 32768) * 32768).astype(np.int16)
    buf = io.BytesIO()
    sf.write(buf, pcm, sample_rate, subtype="PCM_16", format="WAV")
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.getvalue())


def _csv_text(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n", extrasaction="raise")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _diff(old: dict[str, Any], new: dict[str, Any]) -> str:
    keys = sorted(set(old) | set(new))
    return ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys if old.get(k) != new.get(k))


#: The largest synthetic corpus paraling renders (speakers, utterances): beyond it a typo (--speakers 100000000) would
#: render for days before anything is written.
MAX_SPEAKERS, MAX_UTTERANCES = 10_000, 200_000


def check_synthetic_args(n_speakers: int, utts_per_class: int, seed: int, sample_rate: int, n_classes: int = 7) -> None:
    """Refuse arguments of a generated corpus that are out of range, before anything is planned or rendered.

    Raises:
        ConfigError: Naming the argument and the allowed range.
    """
    for name, v in (("n_speakers", n_speakers), ("utts_per_class", utts_per_class)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ConfigError(f"{name} must be a whole number >= 1, but got {name}={v!r}")
    if n_speakers > MAX_SPEAKERS:
        raise ConfigError(f"n_speakers must be <= {MAX_SPEAKERS}, but got n_speakers={n_speakers}")
    if n_speakers * utts_per_class * n_classes > MAX_UTTERANCES:
        raise ConfigError(
            f"{n_speakers} speakers x {utts_per_class} utterances x {n_classes} classes is more than {MAX_UTTERANCES} "
            "utterances; lower --speakers or --utts-per-class"
        )
    if seed < 0:
        raise ConfigError(f"seed must be non-negative, but got {seed=}")
    if sample_rate < 8000:
        raise ConfigError(f"sample_rate must be >= 8000, but got {sample_rate=}")


def check_snr(snr_db: Sequence[float]) -> tuple[float, float]:
    """``(low, high)`` of a speech-to-noise range in dB: finite, low <= high, within [-60, 60].

    Raises:
        ConfigError: Naming the range.
    """
    lo, hi = (float(x) for x in snr_db)
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi or lo < -60 or hi > 60:
        raise ConfigError(
            f"snr_db must be a finite (low, high) range in dB with -60 <= low <= high <= 60, but got {tuple(snr_db)}"
        )
    return lo, hi


def check_target(out_dir: Path) -> Path:
    """The real folder to generate into (a symbolic link is followed to its target, where the corpus is written and
    renamed into place), refused up front when it cannot become a corpus folder.

    Raises:
        CorpusError: ``out_dir`` is a dangling link, the current folder or one above it, or not a folder.
    """
    if out_dir.is_symlink() and not out_dir.exists():
        raise CorpusError(f"{out_dir} is a symbolic link to nothing ({out_dir.resolve()}); give a real folder")
    resolved, cwd = out_dir.absolute().resolve(), Path.cwd().resolve()
    if resolved == cwd or resolved in cwd.parents:
        raise CorpusError(f"--out {out_dir} is the current folder (or above it); give a new sub-folder, e.g. data/demo")
    if resolved.exists() and not resolved.is_dir():
        raise CorpusError(f"{out_dir} exists and is not a folder; pick another --out")
    return resolved


def _check_existing(out_dir: Path, params: dict[str, Any], csv_name: str) -> Path | None:
    """Return the CSV of a finished identical corpus, ``None`` when ``out_dir`` is free; raise otherwise."""
    if not out_dir.exists():
        return None
    if not out_dir.is_dir():
        raise CorpusError(f"{out_dir} exists and is not a folder; pick another --out")
    done = _read_json(out_dir / MARKER)
    if done is not None:
        if done == params:
            return out_dir / csv_name
        raise CorpusError(
            f"{out_dir} already holds a {done.get('recipe', 'synthetic')} corpus generated with other parameters "
            f"({_diff(done, params)}); pick another --out or delete the folder to regenerate it"
        )
    if any(out_dir.iterdir()):
        raise CorpusError(
            f"{out_dir} exists, is not empty and holds no complete generated corpus (no {MARKER} marker); "
            "pick another --out or delete the folder"
        )
    return None


# Worker-side state for rendering in a pool: set once per process by the initializer (picklable, module-level).
_job: tuple[Callable[[Plan, int], np.ndarray], Path, int] | None = None


def _init_worker(render: Callable[[Plan, int], np.ndarray], wav_dir: Path, sample_rate: int) -> None:
    global _job
    _job = (render, wav_dir, sample_rate)


def _render_one(plan: Plan) -> str:
    if _job is None:
        raise RuntimeError("_render_one called before _init_worker")
    render, wav_dir, sample_rate = _job
    _write_wav(wav_dir / f"{plan.uid}.wav", render(plan, sample_rate), sample_rate)
    return plan.uid


def build_corpus(
    out_dir: str | Path,
    params: dict[str, Any],
    plans: Sequence[Plan],
    render: Callable[[Plan, int], np.ndarray],
    csv_name: str,
    columns: Sequence[str],
    n_jobs: int = 1,
) -> Path:
    """Render ``plans`` into ``out_dir`` (``wav/<uid>.wav`` + ``csv_name``) atomically; skip finished work.

    Args:
        out_dir: Target folder; must be absent, empty, or a finished corpus with the same ``params``.
        params: JSON-serialisable parameters identifying the corpus (written to ``out_dir/.complete``).
        plans: Utterances, in CSV order; ``plan.row["file"]`` must be ``wav/<uid>.wav``.
        render: Module-level function ``(plan, sample_rate) -> float32 waveform``; must be deterministic.
        csv_name: File name of the CSV inside ``out_dir``.
        columns: CSV columns, in order.
        n_jobs: Worker processes rendering in parallel (the output does not depend on it). Workers are
            started with ``spawn`` (safe next to threads, e.g. torch's), so a calling script needs the
            ``if __name__ == "__main__":`` guard.

    Returns:
        Path of the CSV.

    Raises:
        CorpusError: ``out_dir`` holds something else (another corpus, other files).
        ConfigError: ``n_jobs`` is not positive.
    """
    if n_jobs < 1:
        raise ConfigError(f"n_jobs must be >= 1, but got {n_jobs=}")
    out_dir = check_target(Path(out_dir))
    params = json.loads(json.dumps(params, sort_keys=True))  # tuples -> lists, as they come back from the marker
    sample_rate = int(params["sample_rate"])
    found = _check_existing(out_dir, params, csv_name)
    if found is not None:
        log.info("%s already complete with the same parameters; skipping generation", out_dir)
        return found

    partial = out_dir.parent / f".{out_dir.name}.partial"
    if partial.exists() and _read_json(partial / _PARAMS) != params:
        shutil.rmtree(partial)  # our own scratch folder from a run with other parameters
    wav_dir = partial / "wav"
    wav_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(partial / _PARAMS, json.dumps(params, sort_keys=True))

    todo = [p for p in plans if not (wav_dir / f"{p.uid}.wav").is_file()]
    if len(todo) < len(plans):
        log.info("resuming %s: %d of %d utterances already rendered", partial, len(plans) - len(todo), len(plans))
    if n_jobs == 1 or len(todo) < 2 * n_jobs:
        _init_worker(render, wav_dir, sample_rate)
        for plan in todo:
            _render_one(plan)
    else:
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(n_jobs, initializer=_init_worker, initargs=(render, wav_dir, sample_rate)) as pool:
            for _ in pool.imap_unordered(_render_one, todo, chunksize=8):
                pass

    atomic_write_text(partial / csv_name, _csv_text([p.row for p in plans], columns))
    atomic_write_text(partial / MARKER, json.dumps(params, sort_keys=True, indent=1) + "\n")
    (partial / _PARAMS).unlink()
    try:
        if out_dir.is_dir():
            out_dir.rmdir()  # empty (checked above); rename() cannot replace it on every platform
        partial.rename(out_dir)
    except OSError as exc:
        # Another process may have finished the same corpus first.
        if _check_existing(out_dir, params, csv_name) is None:
            raise CorpusError(f"cannot move the generated corpus {partial} to {out_dir}: {exc}") from exc
    return out_dir / csv_name
