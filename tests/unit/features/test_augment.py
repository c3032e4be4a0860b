"""Pitch-shift augmentation: the transform, the manifest copies, the missing-binary error and fold hygiene."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable
from types import SimpleNamespace

import numpy as np
import pytest
from omegaconf import DictConfig

import paraling.features.augment.pitch as pitch
import paraling.pipeline.cnn as cnn
import paraling.pipeline.experiment as experiment
from paraling.data.manifest import Manifest, Utterance
from paraling.data.splits import plan_folds
from paraling.errors import ConfigError, DependencyError
from paraling.features.augment import PitchShift, augment_manifest, variant_tag

needs_rubberband = pytest.mark.skipif(shutil.which("rubberband") is None, reason="rubberband-cli not installed")


def _manifest(n_speakers: int = 4, folds: int = 2) -> Manifest:
    return Manifest(
        Utterance(f"s{s}_{k}", f"/x/s{s}_{k}.wav", "a" if k % 2 else "b", f"spk{s}", 1.0, fold=s % folds)
        for s in range(n_speakers)
        for k in range(2)
    )


def test_variant_tag_is_stable() -> None:
    assert variant_tag(1.0, 6) == "pitch+1:c6"
    assert variant_tag(-1.5, 3) == "pitch-1.5:c3"


@needs_rubberband
def test_pitch_shift_keeps_length_and_moves_the_pitch() -> None:
    sr = 16000
    t = np.arange(sr) / sr
    wave = (0.5 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)
    up = PitchShift(2.0)(wave, sr)
    down = PitchShift(-2.0, crispness=6)(wave, sr)
    assert up.shape == wave.shape == down.shape and up.dtype == np.float32

    def peak(x: np.ndarray) -> float:
        spec = np.abs(np.fft.rfft(x[2000:-2000] * np.hanning(len(x) - 4000)))
        return float(np.fft.rfftfreq(len(x) - 4000, 1 / sr)[spec.argmax()])

    assert peak(up) == pytest.approx(440.0 * 2 ** (2 / 12), rel=0.02)
    assert peak(down) == pytest.approx(440.0 * 2 ** (-2 / 12), rel=0.02)
    assert PitchShift(0.0)(wave, sr) is wave


def test_missing_rubberband_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pitch.shutil, "which", lambda name: None)
    with pytest.raises(DependencyError, match=r"apt-get install -y rubberband-cli"):
        PitchShift(1.0)(np.zeros(1600, np.float32), 16000)


def test_augment_manifest_adds_marked_copies_with_the_source_fold() -> None:
    m = _manifest()
    cfg = SimpleNamespace(kind="pitch", semitones=[-1.0, 1.0], crispness=6)
    out, variants, transforms = augment_manifest(m, cfg)
    assert len(out) == 3 * len(m) and len(variants) == len(transforms) == len(out)
    copies = [u for u in out if u.augmented_from is not None]
    by_id = {u.id: u for u in m}
    for u, v, tr in zip(out, variants, transforms, strict=True):
        if u.augmented_from is None:
            assert v == "" and tr is None
            continue
        src = by_id[u.augmented_from]
        assert (u.fold, u.speaker, u.label, u.path) == (src.fold, src.speaker, src.label, src.path)
        assert u.extra["semitones"] in (-1.0, 1.0) and u.extra["crispness"] == 6
        assert v == variant_tag(u.extra["semitones"], 6) and tr == PitchShift(u.extra["semitones"], 6)
    assert {u.extra["semitones"] for u in copies} == {-1.0, 1.0}
    same, v0, _ = augment_manifest(m, SimpleNamespace(kind="none", semitones=[], crispness=6))
    assert same is m and v0 == [""] * len(m)


def test_test_only_utterances_of_a_fixed_split_are_not_copied() -> None:
    utts = [Utterance("tr", "/x/tr.wav", "a", "s1", 1.0, fold=-1), Utterance("te", "/x/te.wav", "a", "s2", 1.0, fold=0)]
    out, _, _ = augment_manifest(Manifest(utts), SimpleNamespace(kind="pitch", semitones=[1.0], crispness=6))
    assert [u.augmented_from for u in out] == [None, None, "tr"]


@pytest.mark.parametrize(
    ("semitones", "crispness", "match"),
    [([], 6, "non-zero shift"), ([0.0], 6, "non-zero shift"), ([1.0], 7, "crispness"), ([30.0], 6, "semitones")],
)
def test_bad_augment_config_is_rejected(semitones: list[float], crispness: int, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        augment_manifest(_manifest(), SimpleNamespace(kind="pitch", semitones=semitones, crispness=crispness))


def test_plan_folds_never_tests_on_copies() -> None:
    out, _, _ = augment_manifest(_manifest(6, 3), SimpleNamespace(kind="pitch", semitones=[1.0], crispness=6))
    for plan in plan_folds(out):
        assert all(out[i].augmented_from is None for i in plan.test)
        test_ids = {out[i].id for i in plan.test}
        assert not any(out[i].augmented_from in test_ids for i in plan.train)


@needs_rubberband
def test_augmented_copies_never_reach_validation_or_test(
    monkeypatch: pytest.MonkeyPatch, tiny_cfg: Callable[..., DictConfig]
) -> None:
    """End to end through run_experiment: checked by utterance id and by a hash of every window's features."""
    captured: dict = {"eval": []}
    real_prepare, real_eval = cnn.prepare_data, cnn.eval_set

    def prepare(cfg, progress=None):
        captured["data"] = real_prepare(cfg, progress)
        return captured["data"]

    def eval_set(bank, rows, y_utt):
        captured["eval"].append(np.asarray(rows).copy())
        return real_eval(bank, rows, y_utt)

    monkeypatch.setattr(cnn, "prepare_data", prepare)
    monkeypatch.setattr(cnn, "eval_set", eval_set)
    cfg = tiny_cfg("tracking=none", "augment=pitch")
    result = experiment.run_experiment(cfg)
    data = captured["data"]
    manifest, bank = data.manifest, data.bank
    aug = np.array([u.augmented_from is not None for u in manifest])
    assert aug.sum() == 2 * (~aug).sum()
    assert all(not str(i).count("@pitch") for i in result.oof.utt_ids)  # out-of-fold scores: originals only

    def window_hashes(rows: np.ndarray) -> set[str]:
        mask = np.zeros(bank.n_utts, dtype=bool)
        mask[rows] = True
        x = bank.gather(bank.windows_of(mask)).numpy()
        return {hashlib.blake2b(w.tobytes(), digest_size=16).hexdigest() for w in x}

    aug_hashes = window_hashes(np.flatnonzero(aug))
    orig_hashes = window_hashes(np.flatnonzero(~aug))
    assert aug_hashes and not aug_hashes & orig_hashes  # the copies really are different audio
    calls = captured["eval"]
    assert len(calls) == 3 * 2  # (train, val, test) per fold
    trained_on_copies = False
    for k in range(0, len(calls), 3):
        train_rows, val_rows, test_rows = calls[k], calls[k + 1], calls[k + 2]
        for rows in (val_rows, test_rows):
            assert not aug[rows].any(), "an augmented utterance id reached a validation/test set"
            assert not window_hashes(rows) & aug_hashes, "augmented features reached a validation/test set"
        held_out = {manifest[i].id for i in np.concatenate([val_rows, test_rows])}
        held_spk = {manifest[i].speaker for i in val_rows}
        for i in train_rows:
            assert manifest[i].augmented_from not in held_out
            assert manifest[i].speaker not in held_spk
        trained_on_copies |= bool(aug[train_rows].any())
    assert trained_on_copies
    # the shifted features are cached under their own variant key: a second run computes nothing new
    again = experiment.prepare_data(cfg)
    assert again.pack_reused and again.store.misses == 0 and len(again.manifest) == len(manifest)
    np.testing.assert_array_equal(again.bank.data.numpy(), bank.data.numpy())
