"""The real-speech recipe: prompt selection per speaker, telephone band, determinism and its errors.

A fake prompt tree (the layout Debian's Asterisk packages install: WAV folders and raw GSM folders) stands in for
/usr/share/asterisk/sounds here; tests/integration/test_speech_corpus.py builds from the installed prompts.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from paraling.data.recipes.demo import LABELS
from paraling.data.recipes.speech import SPEAKERS, prepare_speech
from paraling.errors import ConfigError, CorpusError


def _voice(seconds: float, f0: float, seed: int) -> np.ndarray:
    """A voiced, syllable-modulated 8 kHz signal with energy up to 4 kHz."""
    t = np.arange(int(seconds * 8000)) / 8000
    rng = np.random.default_rng(seed)
    x = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 12))
    x = x * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t)) + 0.05 * rng.standard_normal(t.size)
    return (0.3 * x / np.abs(x).max()).astype(np.float32)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Eight prompts of 2 s per speaker folder (plus one too short and one too long, which must be ignored)."""
    root = tmp_path_factory.mktemp("sounds")
    for si, (_, folders, _) in enumerate(SPEAKERS):
        for fi, folder in enumerate(folders):
            d = root / folder
            (d / "digits").mkdir(parents=True)
            gsm = folder in ("fr", "es")
            for k in range(8):
                wave = _voice(2.0, 100 + 20 * si + 5 * fi, k)
                sub = d / "digits" if k == 0 else d
                if gsm:
                    sf.write(sub / f"p{k}.gsm", wave, 8000, format="RAW", subtype="GSM610")
                else:
                    sf.write(sub / f"p{k}.wav", wave, 8000, subtype="PCM_16")
            sf.write(d / "beep.wav", _voice(0.3, 400, 0), 8000)
            sf.write(d / "long.wav", _voice(9.0, 400, 0), 8000)
    return root


def _rows(csv_path: Path) -> list[dict[str, str]]:
    with open(csv_path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_layout_speakers_and_prompts(root: Path, tmp_path: Path) -> None:
    out = prepare_speech(tmp_path / "c", root, utts_per_class=1)
    rows = _rows(out)
    assert list(rows[0]) == ["file", "label", "speaker", "source", "snr_db"]
    assert len(rows) == len(SPEAKERS) * len(LABELS) == 49
    assert {r["speaker"] for r in rows} == {s[0] for s in SPEAKERS}
    for spk in {r["speaker"] for r in rows}:
        mine = [r for r in rows if r["speaker"] == spk]
        assert sorted(r["label"] for r in mine) == sorted(LABELS)
        assert len({r["source"] for r in mine}) == len(mine)  # every prompt used once per speaker
    assert not any(Path(r["source"]).stem in ("beep", "long") for r in rows)  # outside 1.5-6 s
    assert {r["source"].split("/")[0] for r in rows if r["speaker"] == "allison"} <= {
        "en_US_f_Allison",
        "es_MX_f_Allison",
    }
    assert any(r["source"].endswith(".gsm") for r in rows)
    assert all((r["snr_db"] == "") == (r["label"] == "No_Food") for r in rows)
    for r in rows[:7]:
        info = sf.info(str(out.parent / r["file"]))
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
        assert 2.2 < info.duration < 3.0  # 2 s prompt + 0.3-0.9 s of lead and tail


def test_telephone_band_and_eating_noise(root: Path, tmp_path: Path) -> None:
    out = prepare_speech(tmp_path / "c", root, utts_per_class=1, n_speakers=2, snr_db=(0.0, 0.0))
    rows = _rows(out)
    for r in rows:
        wave, sr = sf.read(out.parent / r["file"], dtype="float32")
        power = np.abs(np.fft.rfft(wave)) ** 2
        freqs = np.fft.rfftfreq(wave.size, 1 / sr)
        assert power[freqs > 4500].sum() < 1e-2 * power.sum(), r["file"]  # the channel is telephone band

    # At 0 dB speech-to-noise the crunch clicks make a Crisp utterance rougher (more change per sample) than No_Food.
    def excess(label: str) -> float:
        r = next(x for x in rows if x["label"] == label and x["speaker"] == "allison")
        wave, _ = sf.read(out.parent / r["file"], dtype="float32")
        lead_free = wave[wave.size // 4 : -wave.size // 4]
        return float(np.mean(np.abs(np.diff(lead_free))) / (np.mean(np.abs(lead_free)) + 1e-9))

    assert excess("Crisp") > excess("No_Food")


def test_deterministic_and_seeded(root: Path, tmp_path: Path) -> None:
    a = prepare_speech(tmp_path / "a", root, utts_per_class=1, n_speakers=2)
    b = prepare_speech(tmp_path / "b", root, utts_per_class=1, n_speakers=2)
    c = prepare_speech(tmp_path / "c", root, utts_per_class=1, n_speakers=2, seed=1)
    files = sorted(p.relative_to(a.parent) for p in (a.parent / "wav").iterdir())
    assert all((a.parent / f).read_bytes() == (b.parent / f).read_bytes() for f in files)
    assert a.read_text() == b.read_text()
    assert a.read_text() != c.read_text()  # another seed picks other prompts
    stamps = {p: p.stat().st_mtime_ns for p in a.parent.rglob("*")}
    elsewhere = tmp_path / "no-prompts-here"  # a finished corpus opens without scanning (or having) the prompts
    assert prepare_speech(tmp_path / "a", elsewhere, utts_per_class=1, n_speakers=2) == a
    assert {p: p.stat().st_mtime_ns for p in a.parent.rglob("*")} == stamps
    with pytest.raises(CorpusError, match="other parameters"):
        prepare_speech(tmp_path / "a", root, utts_per_class=1, n_speakers=2, seed=1)


def test_missing_prompts_name_the_package(root: Path, tmp_path: Path) -> None:
    empty = tmp_path / "nothing"
    empty.mkdir()
    with pytest.raises(CorpusError, match=r"allison.*apt-get install -y asterisk-core-sounds-en-wav"):
        prepare_speech(tmp_path / "c", empty)
    assert not (tmp_path / "c").exists()


def test_symlinked_speaker_is_refused(root: Path, tmp_path: Path) -> None:
    fake = tmp_path / "sounds"
    fake.mkdir()
    for _, folders, _ in SPEAKERS:
        for folder in folders:
            (fake / folder).symlink_to(root / ("fr_CA_f_June" if folder == "fr" else folder))
    with pytest.raises(CorpusError, match=r"'june' and 'armelle' both read .*asterisk-prompt-fr-armelle"):
        prepare_speech(tmp_path / "c", fake, utts_per_class=1)


def test_too_few_prompts_and_bad_arguments(root: Path, tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match=r"'june' has 8 usable recordings .* need 14; lower --utts-per-class"):
        prepare_speech(tmp_path / "c", root, utts_per_class=2)
    for n in (-1, 0, 1, 8):
        with pytest.raises(ConfigError, match="n_speakers"):
            prepare_speech(tmp_path / "c", root, n_speakers=n)
    with pytest.raises(ConfigError, match="snr_db"):
        prepare_speech(tmp_path / "c", root, snr_db=(10.0, 0.0))


def test_cli_builds_the_corpus(root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from paraling.cli.main import main

    args = ["data", "speech", "--out", str(tmp_path / "s"), "--root", str(root), "--utts-per-class", "1"]
    assert main([*args, "--snr-db", "5", "15"]) == 0
    csv_path = Path(capsys.readouterr().out.strip().splitlines()[-1])
    rows = _rows(csv_path)
    assert len(rows) == 49 and all(5.0 <= float(r["snr_db"]) <= 15.0 for r in rows if r["snr_db"])
