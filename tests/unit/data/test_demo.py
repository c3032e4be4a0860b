"""The demo eating-condition corpus: layout, determinism, skip/resume/mismatch behaviour, calibration helper."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from paraling.data.recipes import demo
from paraling.data.recipes.calibrate import linear_baseline_uar, utterance_stats
from paraling.data.recipes.demo import LABELS, prepare_demo
from paraling.errors import ConfigError, CorpusError

TINY = {"n_speakers": 2, "utts_per_class": 1}


def _rows(csv_path: Path) -> list[dict[str, str]]:
    with open(csv_path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return prepare_demo(tmp_path_factory.mktemp("demo") / "corpus", **TINY)


def test_layout(tiny: Path) -> None:
    assert tiny.name == "demo.csv"
    rows = _rows(tiny)
    assert list(rows[0]) == ["file", "label", "speaker", "sentence", "snr_db", "voice"]
    assert len(rows) == 2 * 7 * 1
    assert {r["label"] for r in rows} == set(LABELS) and len(LABELS) == 7
    assert len({r["speaker"] for r in rows}) == 2
    for r in rows:
        info = sf.info(str(tiny.parent / r["file"]))
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
        assert 1.2 < info.duration < 4.0
        if r["label"] == "No_Food":
            assert r["snr_db"] == ""
        else:
            assert demo.DEFAULT_SNR_DB[0] <= float(r["snr_db"]) <= demo.DEFAULT_SNR_DB[1]
    # one voice per speaker, the sentence does not depend on the class
    voices = {(r["speaker"], r["voice"]) for r in rows}
    assert len(voices) == 2
    assert (tiny.parent / ".complete").is_file()
    assert not (tiny.parent.parent / ".corpus.partial").exists()


def _band_share(x: np.ndarray, lo: float, hi: float, sr: int = 16000) -> float:
    spec = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(x.size, 1 / sr)
    return float(spec[(f >= lo) & (f < hi)].sum() / spec.sum())


def test_eating_noise_profiles() -> None:
    """Unit RMS, chew bursts with gaps, and food-specific bands: Crisp is bright and clicky, Banana dull."""
    noise = {
        label: demo.eating_noise(3 * 16000, 16000, profile, np.random.default_rng(0))
        for label, profile in demo._PROFILES.items()
    }
    assert set(noise) == set(LABELS[1:])
    for x in noise.values():
        assert x.dtype == np.float32 and np.isfinite(x).all()
        assert np.sqrt(np.mean(x**2)) == pytest.approx(1.0, rel=1e-3)
        frames = np.mean(x[: x.size // 800 * 800].reshape(-1, 800) ** 2, axis=1)  # 50 ms frames
        assert 10 * np.log10(frames.max() / (frames.min() + 1e-12)) > 15  # bursts and gaps
    assert _band_share(noise["Crisp"], 2500, 8000) > 0.6
    assert _band_share(noise["Banana"], 0, 1000) > 0.6
    kurtosis = {k: float(np.mean(x**4)) for k, x in noise.items()}  # unit RMS: 4th moment = kurtosis
    assert kurtosis["Crisp"] > kurtosis["Banana"]


def test_deterministic(tiny: Path, tmp_path: Path) -> None:
    again = prepare_demo(tmp_path / "again", **TINY)
    assert _snapshot(again.parent) == _snapshot(tiny.parent)
    other = prepare_demo(tmp_path / "other", seed=1, **TINY)
    a, b = _snapshot(other.parent), _snapshot(tiny.parent)
    assert a["demo.csv"] != b["demo.csv"]
    assert a["wav/spk01_Apple_1.wav"] != b["wav/spk01_Apple_1.wav"]


def test_parallel_rendering_is_identical(tiny: Path, tmp_path: Path) -> None:
    par = prepare_demo(tmp_path / "par", n_jobs=2, **TINY)
    assert _snapshot(par.parent) == _snapshot(tiny.parent)


def test_skips_when_complete(tiny: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*_: object) -> np.ndarray:
        raise AssertionError("must not render again")

    monkeypatch.setattr(demo, "_render", boom)
    assert prepare_demo(tiny.parent, **TINY) == tiny


def test_parameter_mismatch(tiny: Path) -> None:
    with pytest.raises(CorpusError, match=r"other parameters.*seed: 0 -> 1.*another --out or delete"):
        prepare_demo(tiny.parent, seed=1, **TINY)


def test_refuses_foreign_folder(tmp_path: Path) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(CorpusError, match="not empty"):
        prepare_demo(tmp_path / "mine", **TINY)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_interrupted_run_resumes(tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = demo._render
    calls = []

    def flaky(plan: object, sample_rate: int) -> np.ndarray:
        calls.append(plan)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return real(plan, sample_rate)

    monkeypatch.setattr(demo, "_render", flaky)
    out = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        prepare_demo(out, **TINY)
    assert not out.exists()  # nothing half-written at the target
    assert len(list((tmp_path / ".resumed.partial" / "wav").glob("*.wav"))) == 4

    calls.clear()
    monkeypatch.setattr(demo, "_render", lambda p, sr: (calls.append(p), real(p, sr))[1])
    csv_path = prepare_demo(out, **TINY)
    assert len(calls) == 14 - 4  # only the missing utterances were rendered
    assert _snapshot(csv_path.parent) == _snapshot(tiny.parent)
    assert not (tmp_path / ".resumed.partial").exists()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_speakers": 0},
        {"utts_per_class": 0},
        {"seed": -1},
        {"snr_db": (10, 0)},
        {"n_jobs": 0},
        {"snr_db": (float("nan"), float("nan"))},
        {"snr_db": (0, float("inf"))},
        {"n_speakers": 100_000_000},
    ],
)
def test_invalid_arguments(tmp_path: Path, kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        prepare_demo(tmp_path / "x", **{**TINY, **kwargs})


def test_linear_baseline_helper(tiny: Path, tone_corpus: Path) -> None:
    assert utterance_stats(np.zeros(16000, np.float32) + 0.01).shape == (80,)
    assert 0.0 <= linear_baseline_uar(tiny, n_splits=2) <= 1.0  # 7 training utterances: runs, learns little
    assert linear_baseline_uar(tone_corpus, n_splits=3) > 0.6  # spectrally distinct classes: it learns them
    with pytest.raises(CorpusError, match="speakers"):
        linear_baseline_uar(tiny, n_splits=5)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--utts-per-class", "0"], "utts_per_class must be a whole number >= 1"),  # was silently 3
        (["--snr-db", "nan", "nan"], "snr_db must be a finite"),
        (["--snr-db", "0", "inf"], "snr_db must be a finite"),
        (["--speakers", "100000000"], "n_speakers must be <= 10000"),  # was a silent hang
    ],
)
def test_cli_arguments_are_one_line_before_rendering(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    from paraling.cli.main import main as cli_main

    with pytest.raises(SystemExit) as exc:
        cli_main(["data", "demo", "--out", str(tmp_path / "d"), *argv])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and message in err and "Traceback" not in err
    assert not list(tmp_path.iterdir())  # nothing rendered


def test_out_dot_is_refused_before_rendering(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`--out .` used to render the whole corpus, fail renaming it onto the current folder and leave ..partial."""
    monkeypatch.chdir(tmp_path)
    calls: list[str] = []
    monkeypatch.setattr(demo, "_render", lambda plan, sr: calls.append(plan.uid) or np.zeros(sr, np.float32))
    for out in (".", str(tmp_path), ".."):
        with pytest.raises(CorpusError, match="is the current folder"):
            prepare_demo(out, **TINY)
    assert calls == [] and not list(tmp_path.iterdir())


def test_out_link_generates_into_the_links_target(tiny: Path, tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real, target_is_directory=True)
    csv_path = prepare_demo(link, **TINY)
    assert csv_path.resolve() == (real / "demo.csv") and link.is_symlink()
    assert _snapshot(real) == _snapshot(tiny.parent)
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".partial")] == []
    assert prepare_demo(link, **TINY) == csv_path  # the finished corpus is found through the link
