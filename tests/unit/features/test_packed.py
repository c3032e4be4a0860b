"""Packed, memory-mapped window banks: same windows as in RAM, rebuilt when stale, atomic, no copy of the corpus."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from omegaconf import OmegaConf

import paraling.data.windows as windows
from paraling.data.windows import WindowBank, fill_frames, plan_layout
from paraling.errors import FeatureError
from paraling.features.packed import PackStore, file_signatures
from paraling.pipeline.dataset import prepare_data


def _feats(lengths: list[int], n_mels: int = 4, seed: int = 0) -> tuple[list[np.ndarray], list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    f = [rng.normal(size=(n, n_mels)).astype(np.float32) + i for i, n in enumerate(lengths)]
    return f, [x.sum(1) for x in f]


def _pack(store: PackStore, f: list[np.ndarray], e: list[np.ndarray], policy: str, normalize: str, key: str = "k"):
    rows, kept = plan_layout(np.array([len(x) for x in f]), 11, policy)
    sigs = np.arange(3 * len(f), dtype=np.int64).reshape(-1, 3)
    fill = lambda d, en: fill_frames(d, en, rows, lambda i: (f[i], e[i]), normalize)  # noqa: E731
    return store.build(key, sigs, rows, kept, f[0].shape[1], fill), sigs


@pytest.mark.parametrize(("policy", "normalize"), [("pad", "utterance"), ("skip", "none"), ("pad", "global")])
def test_packed_bank_gathers_the_same_windows_as_the_in_memory_bank(tmp_path: Path, policy: str, normalize: str):
    f, e = _feats([30, 5, 11, 24])
    mem = WindowBank(f, e, 11, 2, policy, normalize)
    pack, _ = _pack(PackStore(tmp_path), f, e, policy, normalize)
    disk = WindowBank.from_frames(pack.data, pack.energy, pack.rows, pack.kept, 11, 2)
    assert isinstance(pack.data, np.memmap) and not pack.data.flags.writeable
    assert disk.n_windows == mem.n_windows and disk.kept.tolist() == mem.kept.tolist()
    if normalize == "global":
        mask = np.array([True, False, True, False])
        mem.set_global_norm(mask)
        disk.set_global_norm(mask)
    idx = torch.arange(mem.n_windows)
    torch.testing.assert_close(disk.gather(idx), mem.gather(idx))
    np.testing.assert_array_equal(disk.window_energy(), mem.window_energy())


def test_chunked_global_statistics_match_a_direct_computation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(windows, "_NORM_CHUNK_ROWS", 7)  # blocks smaller than an utterance, across runs
    f, e = _feats([30, 12, 25, 40, 18], n_mels=3)
    bank = WindowBank(f, e, 11, 2, normalize="none")
    mask = np.array([True, True, False, True, True])
    bank.set_global_norm(mask)
    ref = torch.from_numpy(np.concatenate([x for x, m in zip(f, mask, strict=True) if m]))
    torch.testing.assert_close(bank.mean, ref.mean(0))
    torch.testing.assert_close(bank.std, ref.std(0))


def test_stale_signatures_and_damaged_packs_are_not_used(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = PackStore(tmp_path)
    f, e = _feats([20, 20])
    _, sigs = _pack(store, f, e, "pad", "none")
    assert store.load("k", sigs) is not None
    changed = sigs.copy()
    changed[1, 1] += 1  # one file's mtime moved
    assert store.load("k", changed) is None
    (tmp_path / "k" / "data.npy").write_bytes(b"\x93NUMPY garbage")
    with caplog.at_level(logging.WARNING):
        assert store.load("k", sigs) is None
    assert "unreadable pack" in caplog.text
    _pack(store, f, e, "pad", "none")  # a rebuild replaces the damaged pack
    assert store.load("k", sigs) is not None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k"]


def test_a_failed_build_leaves_no_pack_and_no_temporary_folder(tmp_path: Path) -> None:
    store = PackStore(tmp_path)
    rows, kept = plan_layout(np.array([20, 20]), 11)
    sigs = file_signatures([tmp_path / "missing.wav", tmp_path / "also-missing.wav"])
    assert (sigs == -1).all()

    def fill(data: np.ndarray, energy: np.ndarray) -> None:
        data[:5] = 1.0
        raise KeyboardInterrupt  # e.g. Ctrl-C in the middle of packing

    with pytest.raises(KeyboardInterrupt):
        store.build("k", sigs, rows, kept, 4, fill)
    assert list(tmp_path.iterdir()) == []
    assert store.load("k", sigs) is None


def test_a_pack_that_cannot_be_written_raises_feature_error(tmp_path: Path) -> None:
    store = PackStore(tmp_path)
    rows, kept = plan_layout(np.array([20]), 11)

    def fill(data: np.ndarray, energy: np.ndarray) -> None:
        raise OSError(5, "Input/output error")

    with pytest.raises(FeatureError, match="cannot write packed features"):
        store.build("k", np.zeros((1, 3), np.int64), rows, kept, 4, fill)
    assert list(tmp_path.iterdir()) == []


def _cfg(csv: Path, cache: Path, **extra: object):
    from paraling.config import compose
    from paraling.config_checks import validate

    cfg = validate(compose(["corpus=csv", f"corpus.path={csv}", f"cache_dir={cache}", "cv.folds=2"]))
    for k, v in extra.items():
        OmegaConf.update(cfg, k, v)
    return cfg


def test_prepare_data_reuses_the_pack_and_rebuilds_it_when_audio_changes(make_corpus, tmp_path: Path) -> None:
    csv = make_corpus(tmp_path / "corpus", n_speakers=4, per_class=1)
    cfg = _cfg(csv, tmp_path / "cache")
    first = prepare_data(cfg)
    assert not first.pack_reused and first.store.misses == len(first.manifest)
    second = prepare_data(cfg)
    assert second.pack_reused and second.store.hits == second.store.misses == 0
    np.testing.assert_array_equal(second.bank.data.numpy(), first.bank.data.numpy())
    in_ram = prepare_data(_cfg(csv, tmp_path / "cache", **{"features.cache": False}))
    np.testing.assert_array_equal(in_ram.bank.data.numpy(), first.bank.data.numpy())

    wav = Path(first.manifest[2].path)
    x, sr = sf.read(wav, dtype="float32")
    sf.write(wav, x[::-1].copy(), sr, subtype="PCM_16")  # new content for one file
    third = prepare_data(cfg)
    assert not third.pack_reused and third.store.misses == 1  # only the changed file is extracted again
    assert not np.array_equal(third.bank.data.numpy(), first.bank.data.numpy())
    packs = [p for p in (tmp_path / "cache" / "packed").iterdir()]
    assert [p.name for p in packs] == [json.loads((packs[0] / "meta.json").read_text())["key"]]


def test_undecodable_files_stay_skipped_when_the_pack_is_reused(
    make_corpus, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    csv = make_corpus(tmp_path / "corpus", n_speakers=4, per_class=1)
    bad = sorted((tmp_path / "corpus" / "wav").iterdir())[0]
    bad.write_bytes(b"RIFF\x00\x00not really a wave file")
    cfg = _cfg(csv, tmp_path / "cache", **{"corpus.on_bad_file": "skip"})
    first = prepare_data(cfg)
    with caplog.at_level(logging.WARNING):
        second = prepare_data(cfg)
    assert second.pack_reused and len(second.manifest) == len(first.manifest) == 11
    assert bad.name in caplog.text
    assert [u.id for u in second.manifest] == [u.id for u in first.manifest]


_PROBE = """
import sys, numpy as np, torch
from paraling.features.packed import PackStore
from paraling.data.windows import WindowBank, plan_layout

def anon_mb():
    for line in open("/proc/self/status"):
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024

torch.set_num_threads(1)
n_utts, frames, n_mels = 2000, 800, 40  # 1.6 M frames: 256 MB of float32
rows, kept = plan_layout(np.full(n_utts, frames), 11)
def fill(data, energy):
    for i in range(n_utts):
        data[i * frames:(i + 1) * frames] = i % 7
        energy[i * frames:(i + 1) * frames] = 0
PackStore(sys.argv[1]).build("big", np.zeros((n_utts, 3), np.int64), rows, kept, n_mels, fill)
base = anon_mb()
pack = PackStore(sys.argv[1]).load("big", np.zeros((n_utts, 3), np.int64))
bank = WindowBank.from_frames(pack.data, pack.energy, pack.rows, pack.kept, 11, 2)
bank.set_global_norm()
peak, total = 0.0, 0.0
for s in range(0, bank.n_windows, 2048):
    total += float(bank.gather(torch.arange(s, min(s + 2048, bank.n_windows))).sum())
    peak = max(peak, anon_mb())
print(bank.data.numel() * 4 / 2**20, peak - base, bank.n_windows)
"""


@pytest.mark.slow
def test_a_corpus_bigger_than_the_memory_budget_is_never_copied_into_ram(tmp_path: Path) -> None:
    """256 MB of frames, every window gathered: anonymous (non-file-backed, unreclaimable) memory stays small."""
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_PROBE), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        check=True,
    )
    data_mb, anon_growth_mb, n_windows = (float(v) for v in out.stdout.split())
    assert data_mb > 240 and n_windows > 700_000
    # the index (16 bytes per window, ~12 MB) and one batch are what the bank adds, plus allocator arenas whose size
    # varies from run to run by tens of MB; a copy of the frames would be all of them
    assert anon_growth_mb < 0.4 * data_mb, f"anonymous memory grew by {anon_growth_mb:.0f} MB for {data_mb:.0f} MB"


def test_folders_left_by_a_killed_build_are_removed_by_the_next_build(tmp_path: Path) -> None:
    import fcntl

    left = [tmp_path / ".k.abc_12.tmp", tmp_path / ".j.0a1b.old"]  # a killed build (lease free), a moved-aside pack
    alive = tmp_path / ".k.xyz.tmp"  # a build still running (it holds its lease): untouched
    for d in [*left, alive]:
        d.mkdir()
        (d / "data.npy").write_bytes(b"partial")
        (d / ".lease").touch()
    fd = os.open(alive / ".lease", os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        f, e = _feats([20, 20])
        _pack(PackStore(tmp_path), f, e, "pad", "none")
        assert not any(d.exists() for d in left) and alive.exists()
    finally:
        os.close(fd)
