"""A real-speech eating-condition corpus: recorded voice prompts with the demo's eating noise mixed under them.

The demo corpus (:mod:`.demo`) is synthetic speech. This recipe swaps the speech for *real recordings*: the voice
prompts that Debian ships for the Asterisk PBX, each package spoken by one professional speaker (telephone quality,
8 kHz). Seven speakers by default (:data:`SPEAKERS`): Allison (US English and Mexican Spanish prompts), June
(Canadian French), Armelle (French), a Colombian Spanish speaker, Menardi and Carlo (Italian) and the Russian
IVR voice. Every utterance is one prompt, used once, drawn per speaker from the recordings of 1.5-6 s. The class is
the eating noise of :func:`paraling.data.recipes.demo.eating_noise` with that speaker's chewing style, mixed at a
speech-to-noise ratio drawn from ``snr_db``; a "mouth full" low-pass on the speech of food classes, pink background
noise and a random level add nuisance, and the whole mix goes through a telephone channel (low-pass at 3.8 kHz), so
the eating noise shares the speech's band instead of sitting alone above it.

The Debian packages of each speaker are listed in :data:`SPEAKERS` (``paraling data speech --help`` prints the
``apt-get`` line; ``scripts/install.sh --dev`` installs them).

Example:
    >>> from paraling.data.recipes.speech import prepare_speech
    >>> csv_path = prepare_speech("data/speech")  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from paraling.data.audio import resample
from paraling.data.manifest import Manifest
from paraling.data.recipes._synthetic import MARKER, Plan, active_rms, build_corpus, check_snr, lowpass, rng_for
from paraling.data.recipes.demo import DEFAULT_SNR_DB, LABELS, eating_profile, mix_eating
from paraling.errors import ConfigError, CorpusError

__all__ = ["DEFAULT_ROOT", "SPEAKERS", "prepare_speech"]

DEFAULT_ROOT = "/usr/share/asterisk/sounds"
"""Where Debian installs the Asterisk prompts."""

SPEAKERS: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("allison", ("en_US_f_Allison", "es_MX_f_Allison"), "asterisk-core-sounds-en-wav asterisk-core-sounds-es-wav"),
    ("june", ("fr_CA_f_June",), "asterisk-core-sounds-fr-wav"),
    ("armelle", ("fr",), "asterisk-prompt-fr-armelle"),
    ("es_co", ("es",), "asterisk-prompt-es-co"),
    ("menardi", ("it_IT_f_Menardi",), "asterisk-prompt-it-menardi-wav"),
    ("carlo", ("it_IT_m_Carlo",), "asterisk-core-sounds-it-wav"),
    ("ivrvoice", ("ru_RU_f_IvrvoiceRU",), "asterisk-core-sounds-ru-wav"),
)
"""(speaker id, folders under the root holding that speaker's prompts, Debian packages that install them)."""

_VERSION = 1  # bump whenever the generated audio changes
_MIN_S, _MAX_S = 1.5, 6.0
_CHANNEL_HZ = 3800.0
_GSM_BYTES_PER_S = 33 * 50  # GSM 6.10: 33-byte frames of 20 ms
_PLAN, _RENDER = 1, 2


def _duration(path: Path) -> float:
    if path.suffix == ".gsm":
        return path.stat().st_size / _GSM_BYTES_PER_S
    return float(sf.info(str(path)).duration)


def _read(path: str) -> tuple[np.ndarray, int]:
    if path.endswith(".gsm"):
        wave, sr = sf.read(path, format="RAW", subtype="GSM610", samplerate=8000, channels=1, dtype="float32")
    else:
        wave, sr = sf.read(path, dtype="float32", always_2d=True)
        wave = wave.mean(axis=1)
    return np.asarray(wave, np.float32), int(sr)


def _prompts(root: Path, speaker: str, folders: tuple[str, ...], packages: str) -> list[Path]:
    """Every usable recording (1.5-6 s) of one speaker, sorted, with one clear error when they are missing."""
    found: list[Path] = []
    for folder in folders:
        d = root / folder
        if not d.is_dir():
            raise CorpusError(
                f"speaker {speaker!r}: {d} does not exist; install its prompts with "
                f"`apt-get install -y {packages}` or pass another --root"
            )
        found += [p for p in sorted(d.rglob("*")) if p.suffix in (".wav", ".gsm") and p.is_file()]
    usable = [p for p in found if _MIN_S <= _duration(p) <= _MAX_S]
    if not usable:
        raise CorpusError(f"speaker {speaker!r}: no recordings of {_MIN_S}-{_MAX_S} s under {root} {folders}")
    return usable


def _finished(out_dir: Path, params: dict[str, object]) -> Path | None:
    """The CSV of a finished corpus built with ``params`` (whatever prompt fingerprint it recorded), else ``None``.

    A finished corpus is reused without scanning the prompts again, so it also opens where they are not installed.
    """
    try:
        done = json.loads((out_dir / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    params = json.loads(json.dumps(params))  # tuples -> lists, as the marker holds them
    if not isinstance(done, dict) or {k: v for k, v in done.items() if k != "sources"} != params:
        return None
    return out_dir / "speech.csv"


def _render(plan: Plan, sample_rate: int) -> np.ndarray:
    """Render one utterance: real speech, mouth-full filter, eating noise, background, telephone channel, level."""
    s = plan.spec
    speech, sr = _read(s["source"])
    wave = mix_eating(resample(speech, sr, sample_rate).astype(np.float32), plan, sample_rate)
    wave = lowpass(wave, _CHANNEL_HZ, sample_rate, order=8)
    wave *= 10 ** (s["level_dbfs"] / 20) / active_rms(wave, sample_rate)
    return np.clip(wave, -1.0, 1.0).astype(np.float32)


def _plans(
    root: Path, speakers: tuple[tuple[str, tuple[str, ...], str], ...], seed: int, snr_db: tuple[float, float], n: int
) -> tuple[list[Plan], str]:
    plans, digest, seen = [], hashlib.sha256(), dict[str, str]()
    for si, (spk_id, folders, packages) in enumerate(speakers):
        real = tuple(os.path.realpath(root / f) for f in folders)
        for r in real:
            if r in seen:
                raise CorpusError(
                    f"speakers {seen[r]!r} and {spk_id!r} both read {r} (a symlink to another speaker's prompts?); "
                    f"install {packages} so that {spk_id!r} has its own recordings"
                )
            seen[r] = spk_id
        pool = _prompts(root, spk_id, folders, packages)
        if len(pool) < n * len(LABELS):
            raise CorpusError(
                f"speaker {spk_id!r} has {len(pool)} usable recordings but {n} utterances per class need "
                f"{n * len(LABELS)}; lower --utts-per-class"
            )
        order = rng_for(seed, _PLAN, si).permutation(len(pool))
        for ci, label in enumerate(LABELS):
            for u in range(n):
                src = pool[int(order[ci * n + u])]
                digest.update(f"{src.relative_to(root)}:{src.stat().st_size}\n".encode())
                rng = rng_for(seed, _PLAN, si, ci, u)
                food = label != LABELS[0]
                profile = eating_profile(label, seed, si) if food else None
                uid = f"{spk_id}_{label}_{u + 1}"
                snr = round(float(rng.uniform(*snr_db)), 2) if food else ""
                spec = {
                    "source": str(src),
                    "mouth_cutoff": float(rng.uniform(1800, 3400)) if food else 0.0,
                    "lead_s": float(rng.uniform(0.15, 0.45)),
                    "tail_s": float(rng.uniform(0.15, 0.45)),
                    "background_snr_db": float(rng.uniform(25, 40)),
                    "level_dbfs": float(rng.uniform(-30, -20)),
                    "profile": asdict(profile) if profile is not None else None,
                    "render_seed": (seed, _RENDER, si, ci, u),
                }
                row = {
                    "file": f"wav/{uid}.wav",
                    "label": label,
                    "speaker": spk_id,
                    "source": str(src.relative_to(root)),
                    "snr_db": snr,
                }
                plans.append(Plan(uid, row, spec))
    return plans, digest.hexdigest()[:16]


def prepare_speech(
    out_dir: str | Path,
    root: str | Path = DEFAULT_ROOT,
    seed: int = 0,
    snr_db: tuple[float, float] = DEFAULT_SNR_DB,
    utts_per_class: int = 6,
    n_speakers: int | None = None,
    sample_rate: int = 16000,
    n_jobs: int = 1,
) -> Path:
    """Build the real-speech eating-condition corpus (or return it if it is already there).

    Writes ``out_dir/wav/<id>.wav`` (mono 16-bit PCM) and ``out_dir/speech.csv`` with columns
    ``file,label,speaker,source,snr_db`` (``source``: the prompt, relative to ``root``; ``snr_db`` empty for
    No_Food). Seven speakers x seven classes x ``utts_per_class`` utterances (294 by default). The output depends only
    on the arguments and the installed prompts (their names and sizes enter the corpus parameters).

    Args:
        out_dir: Target folder; generated atomically (``.<name>.partial`` next to it, renamed at the end).
        root: Folder holding the Asterisk prompt folders (:data:`SPEAKERS`).
        seed: Random seed (non-negative): which prompts, noise and chewing styles.
        snr_db: ``(low, high)`` speech-to-eating-noise ratio range in dB, drawn per utterance; higher is harder.
        utts_per_class: Utterances per speaker and class.
        n_speakers: Use the first ``n_speakers`` of :data:`SPEAKERS` (default all seven).
        sample_rate: Output sample rate in Hz.
        n_jobs: Worker processes used for rendering (``spawn``ed).

    Returns:
        Path of ``speech.csv``.

    Raises:
        ConfigError: An argument is out of range.
        CorpusError: A speaker's prompts are not installed or too few, or ``out_dir`` holds something else.
    """
    if utts_per_class < 1 or not (n_speakers is None or 2 <= n_speakers <= len(SPEAKERS)):
        raise ConfigError(
            f"utts_per_class must be >= 1 and n_speakers in [2, {len(SPEAKERS)}], but got {utts_per_class=}, "
            f"{n_speakers=}"
        )
    if seed < 0:
        raise ConfigError(f"seed must be non-negative, but got {seed=}")
    lo, hi = check_snr(snr_db)
    if sample_rate < 8000:
        raise ConfigError(f"sample_rate must be >= 8000, but got {sample_rate=}")
    speakers = SPEAKERS[: n_speakers or len(SPEAKERS)]
    root = Path(root)
    params = {
        "recipe": "speech",
        "version": _VERSION,
        "speakers": [s[0] for s in speakers],
        "seed": seed,
        "snr_db": [lo, hi],
        "utts_per_class": utts_per_class,
        "sample_rate": sample_rate,
    }
    done = _finished(Path(out_dir), params)
    if done is not None:
        return done
    plans, params["sources"] = _plans(root, speakers, seed, (lo, hi), utts_per_class)
    columns = ("file", "label", "speaker", "source", "snr_db")
    return build_corpus(out_dir, params, plans, _render, "speech.csv", columns, n_jobs=n_jobs)


def load_speech(cfg: Any) -> Manifest:
    """The ``speech`` recipe: real prompts with eating noise built into ``cfg.path`` (when missing), read as CSV."""
    from paraling.data.recipes.csv import prepare_csv

    kwargs: dict[str, Any] = {"seed": cfg.demo_seed, "utts_per_class": cfg.speech_utts_per_class}
    if cfg.demo_snr_db:
        kwargs["snr_db"] = tuple(cfg.demo_snr_db)
    path = prepare_speech(Path(cfg.path or "data/speech"), cfg.speech_root, **kwargs)
    return prepare_csv(path, on_bad_file=cfg.on_bad_file)
