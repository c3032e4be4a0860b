"""A generator of hostile corpora: every kind of bad or odd input a researcher's folder may hold.

``make_hostile_corpus(root)`` writes good speech-like files for a few speakers plus one file per hostile case and
returns ``(csv_path, cases)`` where ``cases`` maps case name → relative file name. The expected behaviour of each
case is documented in the README ("Bad input" section) and asserted in ``tests/integration/test_hostile.py``.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import soundfile as sf

SR = 16000

#: case → (expected behaviour) ; "ok" = used normally, "skip" = logged and counted skip
BEHAVIOUR = {
    "zero_bytes": "skip",
    "truncated_header": "skip",
    "not_audio": "skip",
    "nan_samples": "skip",
    "inf_samples": "skip",
    "all_silence": "ok",
    "one_sample": "ok",
    "shorter_than_window": "ok",
    "ten_minutes": "ok",
    "pcm_u8": "ok",
    "pcm_24": "ok",
    "float32": "ok",
    "rate_44100": "ok",
    "rate_48000": "ok",
    "rate_8000": "ok",
    "stereo": "ok",
    "six_channels": "ok",
    "flac": "ok",
    "ogg": "ok",
    "space in name": "ok",
    "non_utf8_name": "ok",
}


def _voice(rng: np.random.Generator, seconds: float, sr: int, f0: float, label: int) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    x = np.sin(2 * np.pi * f0 * (1 + label) * t) + 0.3 * rng.normal(size=len(t))
    return (0.3 * x / np.abs(x).max()).astype(np.float32)


def make_hostile_corpus(root: Path, n_speakers: int = 5, long_minutes: float = 10.0) -> tuple[Path, dict[str, str]]:
    """Write the corpus under ``root``; returns the CSV path and the hostile case files."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    rows: list[tuple[str, str, str]] = []
    labels = ("a", "b")
    for s in range(n_speakers):
        for li, lab in enumerate(labels):
            for k in range(2):
                name = f"good/s{s}_{lab}_{k}.wav"
                (root / "good").mkdir(exist_ok=True)
                sf.write(root / name, _voice(rng, 0.5, SR, 150 + 20 * s, li), SR, subtype="PCM_16")
                rows.append((name, lab, f"spk{s}"))
    bad = root / "cases"
    bad.mkdir(exist_ok=True)
    base = _voice(rng, 0.5, SR, 200, 0)
    cases: dict[str, str] = {}

    def w(case: str, fname: str, data: np.ndarray, sr: int = SR, **kw: object) -> None:
        sf.write(bad / fname, data, sr, **kw)
        cases[case] = f"cases/{fname}"

    (bad / "zero.wav").write_bytes(b"")
    cases["zero_bytes"] = "cases/zero.wav"
    sf.write(bad / "full.wav", base, SR)
    (bad / "trunc.wav").write_bytes((bad / "full.wav").read_bytes()[:40])
    (bad / "full.wav").unlink()
    cases["truncated_header"] = "cases/trunc.wav"
    (bad / "text.wav").write_text("RIFF? no, just text pretending to be a wav file\n" * 20)
    cases["not_audio"] = "cases/text.wav"
    nan = base.copy()
    nan[100] = np.nan
    w("nan_samples", "nan.wav", nan, subtype="FLOAT")
    inf = base.copy()
    inf[5] = np.inf
    w("inf_samples", "inf.wav", inf, subtype="FLOAT")
    w("all_silence", "silence.wav", np.zeros(SR // 2, np.float32))
    w("one_sample", "one.wav", base[:1])
    w("shorter_than_window", "short.wav", base[: int(0.05 * SR)])
    w("ten_minutes", "long.flac", np.tile(base, int(long_minutes * 60 * 2)), format="FLAC")
    w("pcm_u8", "u8.wav", base, subtype="PCM_U8")
    w("pcm_24", "p24.wav", base, subtype="PCM_24")
    w("float32", "f32.wav", base, subtype="FLOAT")
    for sr in (44100, 48000, 8000):
        w(f"rate_{sr}", f"r{sr}.wav", _voice(rng, 0.5, sr, 200, 0), sr)
    w("stereo", "stereo.wav", np.stack([base, base * 0.5], 1))
    w("six_channels", "six.wav", np.stack([base] * 6, 1))
    w("flac", "x.flac", base, format="FLAC")
    w("ogg", "x.ogg", base, format="OGG", subtype="VORBIS")
    w("space in name", "with space.wav", base)
    raw = os.fsencode(str(bad)) + b"/caf\xe9.wav"  # Latin-1 byte: not valid UTF-8
    with open(raw, "wb") as fh:
        sf.write(fh, base, SR, format="WAV")
    cases["non_utf8_name"] = os.fsdecode(b"cases/caf\xe9.wav")
    for i, (case, fname) in enumerate(cases.items()):
        if case != "non_utf8_name":  # a CSV must be UTF-8; this one is reached through the folders recipe
            rows.append((fname, labels[i % 2], f"spk{i % n_speakers}"))
    csv_path = root / "hostile.csv"
    with open(csv_path, "w", newline="", encoding="utf-8") as fh:
        wr = csv.writer(fh)
        wr.writerow(["file", "label", "speaker"])
        wr.writerows(rows)
    return csv_path, cases
