"""The demo corpus: a synthetic stand-in for the ComParE 2015 Eating Condition task.

Seven classes (``No_Food`` and six foods), ~30 speakers, several utterances per speaker and class. Each speaker is
an espeak-ng English voice variant with its own pitch, pitch range and speaking rate; each utterance is a sentence
drawn independently of the class. The class is only audible in procedurally generated *eating noise* mixed under
the speech:

* a chew rhythm: bursts at a class-dependent rate with jitter, shaped by a Hann envelope;
* crunch clicks: short decaying noise bursts inside each chew, dense and bright for Crisp, Biscuit and Apple;
* wet noise: band-passed noise following the chew envelope, modulated by a "squelch" rate (Nectarine, Banana and
  Haribo differ in band and wetness);
* a "mouth full" low-pass on the speech for every food class (its cutoff is random, so it says "food", not which).

Every speaker has a chewing style (rate, band, click density, decay and wetness perturbed per speaker) so that
speaker-independent cross-validation is meaningful. The speech-to-eating-noise ratio is drawn per utterance from
``snr_db``; pink background noise, a per-speaker channel tilt and a random output level add nuisance. The cues are
local in time (clicks, chew bursts) rather than a global spectral tilt, so utterance-level mean/std pooling of log-mel
features gets only part of the way (see :mod:`paraling.data.recipes.calibrate`).

Example:
    >>> from paraling.data.recipes.demo import prepare_demo
    >>> csv_path = prepare_demo("data/demo")  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from paraling.data.manifest import Manifest
from paraling.data.recipes._synthetic import (
    Plan,
    active_rms,
    bandpass,
    build_corpus,
    check_snr,
    check_synthetic_args,
    lowpass,
    pink_noise,
    rng_for,
)
from paraling.data.synth import synthesize
from paraling.errors import ConfigError

__all__ = ["DEFAULT_SNR_DB", "LABELS", "EatingProfile", "eating_noise", "eating_profile", "mix_eating", "prepare_demo"]

LABELS: tuple[str, ...] = ("No_Food", "Apple", "Nectarine", "Banana", "Crisp", "Biscuit", "Haribo")
"""The seven classes, in the order of the ComParE 2015 Eating Condition task."""

DEFAULT_SNR_DB: tuple[float, float] = (22.0, 32.0)
"""Speech-to-eating-noise ratio range (dB), drawn per utterance; higher is harder.

Calibrated with :func:`paraling.data.recipes.calibrate.linear_baseline_uar` (mean/std fbank + logistic regression,
5-fold speaker-grouped CV, averaged over 3 fold seeds) on the default corpus (30 speakers, 630 utterances): UAR 0.60,
0.66, 0.63 for corpus seeds 0, 1, 2. For comparison (seed 0): 0-10 dB 0.78, 10-20 dB 0.71, 15-25 dB 0.67,
20-30 dB 0.62, 25-35 dB 0.58.
"""

_VERSION = 2  # bump whenever the generated audio changes, so stale corpora are not reused silently
_ACCENTS = ("en", "en-us", "en-gb-x-rp", "en-gb-scotland")
_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5")

_SENTENCES = (
    "I walked to the station this morning.",
    "The meeting starts at ten tomorrow.",
    "Could you pass me the newspaper please?",
    "We should paint the kitchen blue.",
    "My brother lives near the old bridge.",
    "The train was late again today.",
    "She finished her report last night.",
    "Let us meet after the lecture.",
    "The weather looks better this afternoon.",
    "He forgot his keys at the office.",
    "Our neighbours have a small garden.",
    "I need to call the bank later.",
    "The children played in the park.",
    "This book is longer than I thought.",
    "Please close the window behind you.",
    "We are going to the cinema tonight.",
    "The shop opens at nine on Sundays.",
    "My phone battery is almost empty.",
    "They moved to a bigger flat.",
    "Turn left at the next corner.",
    "The concert was sold out quickly.",
    "I will send you the details soon.",
    "Her sister studies music in Berlin.",
    "The bus stop is across the street.",
    "We watched a film about the ocean.",
    "Remember to water the plants tomorrow.",
    "The printer on the second floor works.",
    "He plays football every Saturday.",
    "It was a long and quiet day.",
    "Can you help me with this box?",
    "The coffee machine needs cleaning.",
    "I read an interesting article yesterday.",
    "Our holiday starts next Friday.",
    "The museum was full of tourists.",
    "She always takes the early train.",
    "We talked about the new project.",
)


@dataclass(frozen=True)
class EatingProfile:
    """How one food sounds while chewing (before per-speaker perturbation).

    Attributes:
        chew_rate: Chews per second.
        duty: Fraction of a chew cycle that makes noise.
        clicks_per_chew: Mean number (Poisson) of crunch clicks per chew.
        click_band: Band (Hz) of the clicks.
        click_decay_ms: Decay time constant of a click.
        click_gain: Amplitude of the clicks.
        wet_band: Band (Hz) of the wet noise.
        wet_gain: Amplitude of the wet noise.
        squelch_hz: Rate of the random amplitude modulation of the wet noise (0 for none).
    """

    chew_rate: float
    duty: float
    clicks_per_chew: float
    click_band: tuple[float, float]
    click_decay_ms: float
    click_gain: float
    wet_band: tuple[float, float]
    wet_gain: float
    squelch_hz: float


_PROFILES: dict[str, EatingProfile] = {
    "Apple": EatingProfile(1.5, 0.45, 5.0, (1800, 6000), 1.5, 1.0, (1200, 3500), 0.35, 18),
    "Nectarine": EatingProfile(1.3, 0.6, 0.8, (1000, 3000), 2.0, 0.6, (900, 3200), 0.6, 25),
    "Banana": EatingProfile(1.1, 0.6, 0.3, (400, 1500), 3.0, 0.6, (150, 800), 0.6, 8),
    "Crisp": EatingProfile(1.9, 0.4, 10.0, (2500, 7500), 0.8, 1.0, (2000, 6000), 0.1, 0),
    "Biscuit": EatingProfile(1.7, 0.45, 6.0, (1000, 4500), 2.5, 0.8, (1500, 5000), 0.2, 0),
    "Haribo": EatingProfile(2.0, 0.5, 1.5, (250, 1200), 6.0, 0.8, (300, 1400), 0.45, 35),
}

# Stream tags for rng_for(seed, tag, ...): independent random streams per purpose.
_SPEAKER, _PLAN, _RENDER, _VOICES = 0, 1, 2, 3


@dataclass(frozen=True)
class _Speaker:
    voice: str
    pitch: int
    pitch_range: int
    rate_wpm: int
    rate_factor: float
    band_factor: float
    click_factor: float
    decay_factor: float
    wet_factor: float
    channel_tilt: float


def _speaker(seed: int, index: int) -> _Speaker:
    """The voice and chewing style of speaker ``index`` (independent of how many speakers there are)."""
    combos = [f"{a}+{v}" for a in _ACCENTS for v in _VARIANTS]
    order = rng_for(seed, _VOICES).permutation(len(combos))
    rng = rng_for(seed, _SPEAKER, index)
    return _Speaker(
        voice=combos[int(order[index % len(combos)])],
        pitch=int(rng.integers(25, 76)),
        pitch_range=int(rng.integers(35, 86)),
        rate_wpm=int(rng.integers(140, 186)),
        rate_factor=float(np.exp(rng.normal(0, 0.12))),
        band_factor=float(np.exp(rng.normal(0, 0.15))),
        click_factor=float(np.exp(rng.normal(0, 0.35))),
        decay_factor=float(np.exp(rng.normal(0, 0.2))),
        wet_factor=float(np.exp(rng.normal(0, 0.25))),
        channel_tilt=float(rng.uniform(-0.5, 0.5)),
    )


def _styled(profile: EatingProfile, spk: _Speaker) -> EatingProfile:
    """Apply a speaker's chewing style to a food profile."""
    b = spk.band_factor
    return replace(
        profile,
        chew_rate=profile.chew_rate * spk.rate_factor,
        clicks_per_chew=profile.clicks_per_chew * spk.click_factor,
        click_band=(profile.click_band[0] * b, profile.click_band[1] * b),
        click_decay_ms=profile.click_decay_ms * spk.decay_factor,
        wet_band=(profile.wet_band[0] * b, profile.wet_band[1] * b),
        wet_gain=profile.wet_gain * spk.wet_factor,
    )


def eating_profile(label: str, seed: int, speaker: int) -> EatingProfile:
    """How speaker number ``speaker`` of a corpus with ``seed`` chews ``label`` (a food class of :data:`LABELS`).

    The same chewing styles as the demo corpus's speakers (rate, band, clicks, decay, wetness perturbed per
    speaker); :mod:`.speech` mixes them under real recordings.

    Raises:
        ConfigError: ``label`` is not a food class.
    """
    if label not in _PROFILES:
        raise ConfigError(f"no eating noise for {label!r}; food classes are {sorted(_PROFILES)}")
    return _styled(_PROFILES[label], _speaker(seed, speaker))


def eating_noise(n: int, sample_rate: int, profile: EatingProfile, rng: np.random.Generator) -> np.ndarray:
    """Synthesise ``n`` samples of chewing noise with unit RMS.

    Args:
        n: Number of samples.
        sample_rate: Sample rate in Hz.
        profile: The (speaker-styled) food profile.
        rng: Source of randomness.

    Returns:
        float32 array of shape ``(n,)``.
    """
    env = np.zeros(n, dtype=np.float32)
    clicks = np.zeros(n, dtype=np.float32)
    period = 1.0 / profile.chew_rate
    decay = max(profile.click_decay_ms, 0.2) * sample_rate / 1000
    klen = int(5 * decay) + 1
    kernel_env = np.exp(-np.arange(klen) / decay).astype(np.float32)
    t = rng.uniform(0, period)
    while t < n / sample_rate:
        length = max(8, int(profile.duty * period * rng.uniform(0.75, 1.25) * sample_rate))
        amp = rng.uniform(0.5, 1.0)
        start = int(t * sample_rate)
        seg = (np.hanning(length) * amp).astype(np.float32)[: max(0, n - start)]
        env[start : start + seg.size] += seg
        for _ in range(rng.poisson(profile.clicks_per_chew)):
            pos = start + int(rng.uniform(0.1, 0.9) * length)
            if pos >= n:
                continue
            k = (rng.standard_normal(klen).astype(np.float32) * kernel_env)[: n - pos]
            clicks[pos : pos + k.size] += amp * float(rng.lognormal(0, 0.5)) * k
        t += period * max(0.5, 1 + 0.2 * rng.standard_normal())
    out = profile.click_gain * bandpass(clicks, *profile.click_band, sample_rate)
    wet = bandpass(rng.standard_normal(n).astype(np.float32), *profile.wet_band, sample_rate)
    wet /= np.sqrt(np.mean(wet**2)) + 1e-12
    if profile.squelch_hz > 0:
        mod = lowpass(rng.standard_normal(n).astype(np.float32), profile.squelch_hz, sample_rate)
        mod /= np.abs(mod).max() + 1e-12
        wet *= 1 + 0.8 * mod
    out += profile.wet_gain * wet * env
    return (out / (np.sqrt(np.mean(out**2)) + 1e-12)).astype(np.float32)


def mix_eating(speech: np.ndarray, plan: Plan, sample_rate: int) -> np.ndarray:
    """Speech with a mouth-full filter, lead and tail silence, eating noise and pink background, as planned.

    The shared part of the demo's and :mod:`.speech`'s renderers (their channel and level follow). Reads
    ``mouth_cutoff``, ``lead_s``, ``tail_s``, ``render_seed``, ``profile`` and ``background_snr_db`` from
    ``plan.spec`` and ``snr_db`` from ``plan.row``.
    """
    s = plan.spec
    if s["mouth_cutoff"] > 0:
        speech = lowpass(speech, s["mouth_cutoff"], sample_rate)
    speech /= active_rms(speech, sample_rate)
    lead, tail = int(s["lead_s"] * sample_rate), int(s["tail_s"] * sample_rate)
    wave = np.concatenate([np.zeros(lead, np.float32), speech, np.zeros(tail, np.float32)])
    rng = rng_for(*s["render_seed"])
    if s["profile"] is not None:
        fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in s["profile"].items()}
        profile = EatingProfile(**fields)
        wave += eating_noise(wave.size, sample_rate, profile, rng) * 10 ** (-plan.row["snr_db"] / 20)
    wave += pink_noise(wave.size, rng) * 10 ** (-s["background_snr_db"] / 20)
    return wave


def _render(plan: Plan, sample_rate: int) -> np.ndarray:
    """Render one utterance: speech, mouth-full filter, eating noise, background, channel, level."""
    s = plan.spec
    speech = synthesize(
        plan.row["sentence"], s["voice"], s["rate_wpm"], s["pitch"], s["pitch_range"], sample_rate=sample_rate
    )
    wave = mix_eating(speech, plan, sample_rate)
    wave[1:] += s["channel_tilt"] * wave[:-1].copy()
    wave *= 10 ** (s["level_dbfs"] / 20) / active_rms(wave, sample_rate)
    return np.clip(wave, -1.0, 1.0).astype(np.float32)


def _plans(n_speakers: int, seed: int, snr_db: tuple[float, float], utts_per_class: int) -> list[Plan]:
    plans = []
    for si in range(n_speakers):
        spk = _speaker(seed, si)
        spk_id = f"spk{si + 1:02d}"
        for ci, label in enumerate(LABELS):
            profile = _PROFILES.get(label)
            for u in range(utts_per_class):
                rng = rng_for(seed, _PLAN, si, ci, u)
                uid = f"{spk_id}_{label}_{u + 1}"
                sentence = _SENTENCES[int(rng.integers(len(_SENTENCES)))]
                snr = round(float(rng.uniform(*snr_db)), 2) if profile is not None else ""
                spec = {
                    "voice": spk.voice,
                    "pitch": int(np.clip(spk.pitch + rng.integers(-4, 5), 0, 100)),
                    "pitch_range": spk.pitch_range,
                    "rate_wpm": int(spk.rate_wpm + rng.integers(-8, 9)),
                    "mouth_cutoff": float(rng.uniform(2500, 6000)) if profile is not None else 0.0,
                    "lead_s": float(rng.uniform(0.15, 0.45)),
                    "tail_s": float(rng.uniform(0.15, 0.45)),
                    "background_snr_db": float(rng.uniform(25, 40)),
                    "level_dbfs": float(rng.uniform(-30, -20)),
                    "channel_tilt": spk.channel_tilt,
                    "profile": asdict(_styled(profile, spk)) if profile is not None else None,
                    "render_seed": (seed, _RENDER, si, ci, u),
                }
                row = {
                    "file": f"wav/{uid}.wav",
                    "label": label,
                    "speaker": spk_id,
                    "sentence": sentence,
                    "snr_db": snr,
                    "voice": spk.voice,
                }
                plans.append(Plan(uid, row, spec))
    return plans


def prepare_demo(
    out_dir: str | Path,
    n_speakers: int = 30,
    seed: int = 0,
    snr_db: tuple[float, float] = DEFAULT_SNR_DB,
    utts_per_class: int = 3,
    sample_rate: int = 16000,
    n_jobs: int = 1,
) -> Path:
    """Generate the demo eating-condition corpus (or return it if it is already there).

    Writes ``out_dir/wav/<id>.wav`` (mono 16-bit PCM) and ``out_dir/demo.csv`` with columns
    ``file,label,speaker,sentence,snr_db,voice`` (``file`` relative to the CSV; ``snr_db`` empty for No_Food).
    The output depends only on the arguments (not on ``n_jobs``): the same seed gives byte-identical files.

    Args:
        out_dir: Target folder; generated atomically (``.<name>.partial`` next to it, renamed at the end).
        n_speakers: Number of speakers (voices with their own chewing style).
        seed: Random seed (non-negative).
        snr_db: ``(low, high)`` range of the speech-to-eating-noise ratio, drawn uniformly per utterance;
            higher is harder.
        utts_per_class: Utterances per speaker and class.
        sample_rate: Output sample rate in Hz.
        n_jobs: Worker processes used for rendering (``spawn``ed: a calling script needs the
            ``if __name__ == "__main__":`` guard). 1 renders in this process.

    Returns:
        Path of ``demo.csv``.

    Raises:
        ConfigError: An argument is out of range.
        CorpusError: ``out_dir`` holds a corpus made with other parameters, or other files.

    Example:
        >>> csv_path = prepare_demo("data/demo", n_speakers=4, utts_per_class=1)  # doctest: +SKIP
    """
    check_synthetic_args(n_speakers, utts_per_class, seed, sample_rate)
    lo, hi = check_snr(snr_db)
    params = {
        "recipe": "demo",
        "version": _VERSION,
        "n_speakers": n_speakers,
        "seed": seed,
        "snr_db": [lo, hi],
        "utts_per_class": utts_per_class,
        "sample_rate": sample_rate,
    }
    plans = _plans(n_speakers, seed, (lo, hi), utts_per_class)
    columns = ("file", "label", "speaker", "sentence", "snr_db", "voice")
    return build_corpus(out_dir, params, plans, _render, "demo.csv", columns, n_jobs=n_jobs)


def load_demo(cfg: Any) -> Manifest:
    """The ``demo`` recipe: the corpus generated into ``cfg.path`` (when missing), read as its CSV."""
    from paraling.data.recipes.csv import prepare_csv

    kwargs: dict[str, Any] = {"n_speakers": cfg.demo_speakers, "seed": cfg.demo_seed}
    if cfg.demo_snr_db:
        kwargs["snr_db"] = tuple(cfg.demo_snr_db)
    return prepare_csv(prepare_demo(Path(cfg.path or "data/demo"), **kwargs), on_bad_file=cfg.on_bad_file)
