"""`paraling bench` runs and writes the documented JSON keys (speed itself is not asserted)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from paraling.cli.bench import main


@pytest.mark.slow
def test_bench_quick_subset_writes_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "b.json"
    assert main(["--quick", "--json", str(out), "--skip", "memory", "uar", "prune", "ssl"]) == 0
    res = json.loads(out.read_text())
    for key in (
        "train_speedup_vs_naive",
        "train_fraction_of_matmul_peak",
        "infer_speedup_vs_naive",
        "feature_cache_speedup",
        "sweep_overhead_fraction",
    ):
        assert isinstance(res[key], float) and res[key] > 0
    assert {f["name"][:3] for f in res["figures"]} == {"(a)", "(b)", "(c)", "(d)", "(e)"}
    # which peak (b) is read against depends on how the CPU computes bf16: the JSON says so
    from paraling.ops.cpu import bf16_hardware, cpu_model

    assert res["cpu"] == cpu_model() and res["bf16_hardware"] == bf16_hardware()


def test_memory_reference_is_one_copy_of_the_real_windows() -> None:
    """(f)'s reference counts exactly the windows the pipeline cuts from a 3-s utterance, 40x11 float32 each."""
    import numpy as np

    from paraling.bench.io import _window_copy_mb
    from paraling.data.windows import WindowBank
    from paraling.features.logmel import LogMelSpec, extract_logmel

    wave = np.random.default_rng(0).uniform(-0.1, 0.1, 48000)
    feats, energy = extract_logmel(wave, LogMelSpec())
    bank = WindowBank([feats], [energy], 11, 2, normalize="none")
    assert _window_copy_mb(3.0) * 1e6 == bank.n_windows * 40 * 11 * 4


def test_flop_split_matches_the_layer_arithmetic() -> None:
    """(b)'s model FLOPs per window, by kind, equal the hand count for the default CNN (dense, fwd + bwd)."""
    from paraling.bench.common import paper_cnn, train_flops_per_window, train_flops_split

    model = paper_cnn()
    split = train_flops_split(model)
    fc_forward = 2 * (640 * 500 + 500 * 500 + 500 * 7)
    conv_forward = [2 * 40 * 11 * 32 * 9, 2 * 20 * 5 * 64 * 32 * 4, 2 * 10 * 2 * 128 * 64 * 4]
    # conv1 has no input gradient (the windows need none); the others compute input and weight gradients
    assert split["matmul"] == 3 * fc_forward
    assert split["conv"] == 2 * conv_forward[0] + 3 * (conv_forward[1] + conv_forward[2])
    assert train_flops_per_window(model) == split["conv"] + split["matmul"]
    assert model.kernels == "auto"  # restored after counting


def test_memory_headline_is_the_printed_anonymous_slope(monkeypatch: pytest.MonkeyPatch) -> None:
    # The whole RSS can read a slope of 0 when a fixed spike sets both peaks; the headline key must carry the
    # anonymous-memory slope that (f) prints, and keep the whole-RSS slope beside it.
    from paraling.bench import io, suite

    fake = {
        "window_copy_mb_per_1000_utts": 250.0,
        "rss_small_mb": 1226.0,
        "rss_large_mb": 1226.0,
        "mb_per_1000_utts": 0.0,
        "anon_small_mb": 600.0,
        "anon_large_mb": 620.0,
        "anon_mb_per_1000_utts": 11.0,
        "utt_seconds": 3.0,
    }
    monkeypatch.setattr(io, "peak_memory", lambda sizes: fake)
    lines: list[str] = []
    res = suite.run_suite(skip=("train", "infer", "features", "sweep", "uar", "prune", "ssl"), log=lines.append)
    assert res["peak_rss_mb_per_1000_utts"] == 11.0
    assert res["peak_rss_incl_mapped_mb_per_1000_utts"] == 0.0
    (fig,) = res["figures"]
    assert fig["value"] == 11.0 and abs(fig["ratio"] - 11.0 / 250.0) < 1e-12
    assert any(line.startswith("(f)") for line in lines)


@pytest.mark.slow
def test_pruning_figure_runs_the_demo_study_twice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """(h): with at most the sampler's 4 random start-up trials both studies try the same parameters (same seed),
    so the pruned study can only train fewer epochs; the unpruned one trains every fold and epoch of every trial."""
    from paraling.bench.sweep_efficiency import sweep_pruning

    monkeypatch.chdir(tmp_path)
    sp = sweep_pruning(n_trials=4, n_speakers=9, windows_per_epoch=1_000)
    assert sp["unpruned_epochs"] == 4 * 3 * 2 and sp["unpruned_trials"] == 4  # demo study: 3 folds x 2 epochs
    assert sp["pruned_epochs"] <= sp["unpruned_epochs"]
    assert sp["epoch_fraction"] == sp["pruned_epochs"] / sp["unpruned_epochs"]
    assert sp["pruned_pruned"] >= 1 or sp["pruned_epochs"] == sp["unpruned_epochs"]
    assert sp["best_delta"] == sp["pruned_best"] - sp["unpruned_best"] and sp["unpruned_fold_std"] >= 0


@pytest.mark.slow
def test_ssl_figures_compare_extraction_and_memory_in_the_same_run() -> None:
    from paraling.bench import suite

    lines: list[str] = []
    res = suite.run_suite(skip=tuple(n for n in suite.SECTIONS if n != "ssl"), log=lines.append)
    assert [f["name"][:3] for f in res["figures"]] == ["(i)", "(j)"]
    ssl = res["ssl"]
    assert ssl["cold_vs_naive"] > 0 and ssl["cached_audio_s_per_s"] > ssl["cold_audio_s_per_s"]
    assert ssl["minutes"] == 10.0 and ssl["long_output_mb"] > 20 * ssl["chunk_output_mb"]  # a 10-min file's output
    assert any(line.startswith("(j) ssl peak memory, 10-min file") for line in lines)
