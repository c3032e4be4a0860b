"""`paraling bench` runs and writes the documented JSON keys (speed itself is not asserted)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from paraling.commands.bench import main


@pytest.mark.slow
def test_bench_quick_subset_writes_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "b.json"
    assert main(["--quick", "--json", str(out), "--skip", "memory", "uar"]) == 0
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
    from paraling.models.native import bf16_hardware, cpu_model

    assert res["cpu"] == cpu_model() and res["bf16_hardware"] == bf16_hardware()


def test_memory_reference_is_one_copy_of_the_real_windows() -> None:
    """(f)'s reference counts exactly the windows the pipeline cuts from a 3-s utterance, 40x11 float32 each."""
    import numpy as np

    from paraling.bench.io import _window_copy_mb
    from paraling.features.logmel import LogMelSpec, extract_logmel
    from paraling.windows import WindowBank

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
    assert model.native  # restored after counting
