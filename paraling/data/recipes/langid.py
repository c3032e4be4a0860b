"""A synthetic language-identification corpus: the source task for transfer learning.

Seven languages (German, French, Spanish, Italian, Portuguese, Dutch, Russian) spoken by the *same* speakers: each
speaker is an espeak-ng voice variant (``m1`` ... ``f5``) with its own pitch, pitch range and rate, and speaks every
language with it, so speaker and language are not confounded. Every utterance jitters pitch and rate, goes through a
telephone band (300-3400 Hz) with a random channel tilt and gets background noise at a random SNR. Whole speakers are
held out (``split`` column: ``train`` / ``test``), so ``cv.scheme=split`` trains on the others and tests on them;
``cv.scheme=kfold`` ignores the column and groups folds by speaker.

Example:
    >>> from paraling.data.recipes.langid import prepare_langid
    >>> csv_path = prepare_langid("data/langid")  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from paraling.data.recipes._synthetic import Plan, active_rms, bandpass, build_corpus, pink_noise, rng_for
from paraling.data.synth import synthesize
from paraling.errors import ConfigError

__all__ = ["LANGUAGES", "prepare_langid"]

LANGUAGES: dict[str, str] = {
    "German": "de",
    "French": "fr",
    "Spanish": "es",
    "Italian": "it",
    "Portuguese": "pt",
    "Dutch": "nl",
    "Russian": "ru",
}
"""Class label -> espeak-ng language code."""

_VERSION = 2  # bump whenever the generated audio changes
_VARIANTS = ("m1", "f1", "m2", "f2", "m3", "f3", "m4", "f4", "m5", "f5", "m6", "m7")

_SENTENCES: dict[str, tuple[str, ...]] = {
    "de": (
        "Ich gehe heute Abend ins Kino.",
        "Das Wetter ist morgen sehr schön.",
        "Wir wohnen seit drei Jahren in Berlin.",
        "Kannst du mir bitte das Salz geben?",
        "Der Zug kommt um acht Uhr an.",
        "Meine Schwester arbeitet in einem Krankenhaus.",
        "Im Sommer fahren wir an die See.",
        "Das Buch liegt auf dem Tisch.",
        "Er trinkt jeden Morgen einen Kaffee.",
        "Die Kinder spielen im Garten.",
    ),
    "fr": (
        "Je vais au cinéma ce soir.",
        "Il fera très beau demain.",
        "Nous habitons à Paris depuis trois ans.",
        "Peux-tu me passer le sel, s'il te plaît ?",
        "Le train arrive à huit heures.",
        "Ma sœur travaille dans un hôpital.",
        "En été, nous partons à la mer.",
        "Le livre est sur la table.",
        "Il boit un café tous les matins.",
        "Les enfants jouent dans le jardin.",
    ),
    "es": (
        "Esta noche voy al cine.",
        "Mañana hará muy buen tiempo.",
        "Vivimos en Madrid desde hace tres años.",
        "¿Me pasas la sal, por favor?",
        "El tren llega a las ocho.",
        "Mi hermana trabaja en un hospital.",
        "En verano vamos a la playa.",
        "El libro está encima de la mesa.",
        "Él toma un café todas las mañanas.",
        "Los niños juegan en el jardín.",
    ),
    "it": (
        "Stasera vado al cinema.",
        "Domani il tempo sarà molto bello.",
        "Abitiamo a Roma da tre anni.",
        "Mi passi il sale, per favore?",
        "Il treno arriva alle otto.",
        "Mia sorella lavora in un ospedale.",
        "D'estate andiamo al mare.",
        "Il libro è sul tavolo.",
        "Lui beve un caffè ogni mattina.",
        "I bambini giocano in giardino.",
    ),
    "pt": (
        "Hoje à noite vou ao cinema.",
        "Amanhã o tempo vai estar muito bonito.",
        "Moramos em Lisboa há três anos.",
        "Podes passar-me o sal, por favor?",
        "O comboio chega às oito horas.",
        "A minha irmã trabalha num hospital.",
        "No verão vamos à praia.",
        "O livro está em cima da mesa.",
        "Ele bebe um café todas as manhãs.",
        "As crianças brincam no jardim.",
    ),
    "nl": (
        "Ik ga vanavond naar de bioscoop.",
        "Morgen wordt het erg mooi weer.",
        "We wonen al drie jaar in Amsterdam.",
        "Kun je mij het zout even geven?",
        "De trein komt om acht uur aan.",
        "Mijn zus werkt in een ziekenhuis.",
        "In de zomer gaan we naar zee.",
        "Het boek ligt op de tafel.",
        "Hij drinkt elke ochtend een kop koffie.",
        "De kinderen spelen in de tuin.",
    ),
    "ru": (
        "Сегодня вечером я иду в кино.",
        "Завтра будет очень хорошая погода.",
        "Мы живём в Москве уже три года.",
        "Передай мне, пожалуйста, соль.",
        "Поезд приходит в восемь часов.",
        "Моя сестра работает в больнице.",
        "Летом мы ездим на море.",
        "Книга лежит на столе.",
        "Он пьёт кофе каждое утро.",
        "Дети играют в саду.",
    ),
}

# Stream tags for rng_for(seed, tag, ...).
_SPEAKER, _PLAN, _RENDER, _SPLIT = 10, 11, 12, 13


def _render(plan: Plan, sample_rate: int) -> np.ndarray:
    """Render one utterance: speech, telephone band, channel tilt, noise, level."""
    s = plan.spec
    speech = synthesize(
        plan.row["sentence"], s["voice"], s["rate_wpm"], s["pitch"], s["pitch_range"], sample_rate=sample_rate
    )
    lead, tail = int(s["lead_s"] * sample_rate), int(s["tail_s"] * sample_rate)
    wave = np.concatenate([np.zeros(lead, np.float32), speech, np.zeros(tail, np.float32)])
    wave = bandpass(wave, 300.0, 3400.0, sample_rate, order=4)
    wave[1:] += s["channel_tilt"] * wave[:-1].copy()
    wave /= active_rms(wave, sample_rate)
    rng = rng_for(*s["render_seed"])
    noise = pink_noise(wave.size, rng) * s["pink_share"] + rng.standard_normal(wave.size).astype(np.float32) * (
        1 - s["pink_share"]
    )
    noise /= np.sqrt(np.mean(noise**2)) + 1e-12
    wave += noise * 10 ** (-s["snr_db"] / 20)
    wave *= 10 ** (s["level_dbfs"] / 20) / active_rms(wave, sample_rate)
    return np.clip(wave, -1.0, 1.0).astype(np.float32)


def _plans(n_speakers: int, utts_per_language: int, seed: int, n_val_speakers: int) -> list[Plan]:
    val = set(rng_for(seed, _SPLIT).permutation(n_speakers)[:n_val_speakers].tolist())
    plans = []
    for si in range(n_speakers):
        srng = rng_for(seed, _SPEAKER, si)
        variant = _VARIANTS[si % len(_VARIANTS)]
        pitch, pitch_range = int(srng.integers(25, 76)), int(srng.integers(35, 86))
        rate, tilt = int(srng.integers(140, 186)), float(srng.uniform(-0.5, 0.5))
        spk_id = f"spk{si + 1:02d}"
        for li, (label, code) in enumerate(LANGUAGES.items()):
            for u in range(utts_per_language):
                rng = rng_for(seed, _PLAN, si, li, u)
                uid = f"{spk_id}_{code}_{u + 1:02d}"
                bank = _SENTENCES[code]
                spec = {
                    "voice": f"{code}+{variant}",
                    "pitch": int(np.clip(pitch + rng.integers(-8, 9), 0, 100)),
                    "pitch_range": int(np.clip(pitch_range + rng.integers(-10, 11), 0, 100)),
                    "rate_wpm": int(rate + rng.integers(-15, 16)),
                    "lead_s": float(rng.uniform(0.1, 0.4)),
                    "tail_s": float(rng.uniform(0.1, 0.4)),
                    "channel_tilt": float(np.clip(tilt + rng.normal(0, 0.1), -0.9, 0.9)),
                    "snr_db": float(rng.uniform(5, 20)),
                    "pink_share": float(rng.uniform(0, 1)),
                    "level_dbfs": float(rng.uniform(-30, -20)),
                    "render_seed": (seed, _RENDER, si, li, u),
                }
                row = {
                    "file": f"wav/{uid}.wav",
                    "label": label,
                    "speaker": spk_id,
                    "split": "test" if si in val else "train",
                    "language": code,
                    "sentence": bank[int(rng.integers(len(bank)))],
                    "voice": spec["voice"],
                }
                plans.append(Plan(uid, row, spec))
    return plans


def prepare_langid(
    out_dir: str | Path,
    n_speakers: int = 12,
    utts_per_language: int = 20,
    seed: int = 0,
    sample_rate: int = 16000,
    n_val_speakers: int | None = None,
    n_jobs: int = 1,
) -> Path:
    """Generate the language-ID corpus (or return it if it is already there).

    Writes ``out_dir/wav/<id>.wav`` (mono 16-bit PCM) and ``out_dir/langid.csv`` with columns
    ``file,label,speaker,split,language,sentence,voice``. The output depends only on the arguments (not on
    ``n_jobs``): the same seed gives byte-identical files.

    Args:
        out_dir: Target folder; generated atomically (``.<name>.partial`` next to it, renamed at the end).
        n_speakers: Number of speakers; each speaks all seven languages with the same voice.
        utts_per_language: Utterances per speaker and language.
        seed: Random seed (non-negative).
        sample_rate: Output sample rate in Hz.
        n_val_speakers: Speakers held out as ``split=test``; default a quarter of them (at least one).
        n_jobs: Worker processes used for rendering (``spawn``ed: a calling script needs the
            ``if __name__ == "__main__":`` guard). 1 renders in this process.

    Returns:
        Path of ``langid.csv``.

    Raises:
        ConfigError: An argument is out of range.
        CorpusError: ``out_dir`` holds a corpus made with other parameters, or other files.

    Example:
        >>> csv_path = prepare_langid("data/langid", n_speakers=4, utts_per_language=2)  # doctest: +SKIP
    """
    if n_speakers < 2 or utts_per_language < 1:
        raise ConfigError(
            f"n_speakers must be >= 2 (one is held out) and utts_per_language >= 1, but got {n_speakers=}, "
            f"{utts_per_language=}"
        )
    if n_val_speakers is None:
        n_val_speakers = max(1, round(n_speakers / 4))
    if not 1 <= n_val_speakers < n_speakers:
        raise ConfigError(f"n_val_speakers must lie in [1, n_speakers), but got {n_val_speakers=}, {n_speakers=}")
    if seed < 0:
        raise ConfigError(f"seed must be non-negative, but got {seed=}")
    if sample_rate < 8000:
        raise ConfigError(f"sample_rate must be >= 8000 (telephone band up to 3400 Hz), but got {sample_rate=}")
    params = {
        "recipe": "langid",
        "version": _VERSION,
        "n_speakers": n_speakers,
        "utts_per_language": utts_per_language,
        "seed": seed,
        "sample_rate": sample_rate,
        "n_val_speakers": n_val_speakers,
    }
    plans = _plans(n_speakers, utts_per_language, seed, n_val_speakers)
    columns = ("file", "label", "speaker", "split", "language", "sentence", "voice")
    return build_corpus(out_dir, params, plans, _render, "langid.csv", columns, n_jobs=n_jobs)
