"""Window bank: counts at the edges, exact contents, short-utterance policies, normalisation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from paraling.data.windows import WindowBank, count_windows
from paraling.errors import WindowError


@pytest.mark.parametrize(
    ("n", "w", "s", "expected"),
    [(10, 11, 2, 0), (11, 11, 2, 1), (12, 11, 2, 1), (13, 11, 2, 2), (100, 11, 2, 45), (5, 1, 1, 5)],
)
def test_count_windows(n: int, w: int, s: int, expected: int) -> None:
    assert count_windows(n, w, s) == expected


def _feats(lengths: list[int], n_mels: int = 4) -> tuple[list[np.ndarray], list[np.ndarray]]:
    rng = np.random.default_rng(0)
    f = [rng.normal(size=(n, n_mels)).astype(np.float32) for n in lengths]
    return f, [x.sum(1) for x in f]


def test_windows_are_exact_slices_without_copies() -> None:
    f, e = _feats([20, 13, 11])
    bank = WindowBank(f, e, 11, 2, normalize="none")
    assert bank.n_windows == 5 + 2 + 1
    assert bank._view.data_ptr() == bank.data.data_ptr()  # a view, not a copy of all windows
    x = bank.gather(torch.arange(bank.n_windows))
    assert x.shape == (8, 1, 4, 11)
    utt = bank.utt.numpy()
    for k in range(bank.n_windows):
        u = utt[k]
        start = int(bank.starts[k]) - int(bank.offsets[u])
        np.testing.assert_array_equal(x[k, 0].numpy(), f[u][start : start + 11].T)
    np.testing.assert_array_equal(
        bank.window_energy(),
        np.concatenate(
            [
                e[u][int(s) - int(bank.offsets[u]) + 5 : int(s) - int(bank.offsets[u]) + 6]
                for u, s in zip(utt, bank.starts.numpy(), strict=True)
            ]
        ),
    )


def test_short_policies() -> None:
    f, e = _feats([20, 4])
    pad = WindowBank(f, e, 11, 2, "pad", "none")
    assert pad.n_windows_per_utt.tolist() == [5, 1]
    w = pad.gather(torch.tensor([5]))[0, 0].numpy()
    assert set(map(tuple, w.T.tolist())) == set(map(tuple, f[1].tolist()))
    skip = WindowBank(f, e, 11, 2, "skip", "none")
    assert skip.n_windows_per_utt.tolist() == [5, 0] and skip.kept.tolist() == [True, False]
    with pytest.raises(WindowError, match=r"shorter than windows.width=11.*\['short'\]"):
        WindowBank(f, e, 11, 2, "error", "none", names=["long", "short"])


def test_utterance_and_global_normalisation() -> None:
    f, e = _feats([30, 30])
    f[1] += 5.0
    bank = WindowBank(f, e, 11, 1, normalize="utterance")
    for u in range(2):
        rows = bank.data[int(bank.offsets[u]) : int(bank.offsets[u]) + 30]
        assert torch.allclose(rows.mean(0), torch.zeros(4), atol=1e-5)
    g = WindowBank(f, e, 11, 1, normalize="global")
    g.set_global_norm(np.array([True, False]))
    x = g.gather(g.windows_of(np.array([True, False])))
    assert abs(float(x.mean())) < 0.2
    y = g.gather(g.windows_of(np.array([False, True])))
    assert float(y.mean()) > 3  # statistics come from the first utterance only


def test_windows_of_selects_utterances() -> None:
    f, e = _feats([15, 15, 15])
    bank = WindowBank(f, e, 11, 2, normalize="none")
    idx = bank.windows_of(np.array([False, True, False]))
    assert set(bank.utt[idx].tolist()) == {1} and len(idx) == 3


def test_gather_is_the_raw_gather_finished_on_the_device() -> None:
    rng = np.random.default_rng(0)
    feats = [rng.standard_normal((30, 8)).astype(np.float32) for _ in range(3)]
    bank = WindowBank(feats, [np.zeros(30, np.float32)] * 3, width=5, shift=2, normalize="none")
    bank.set_global_norm()
    idx = torch.tensor([0, 4, 7])
    raw = bank.gather_raw(idx)
    assert raw.shape == (3, 8, 5)
    torch.testing.assert_close(bank.gather(idx), bank.finish(raw))
    torch.testing.assert_close(bank.finish(raw)[:, 0], (raw - bank.mean[:, None]) / bank.std[:, None])


def test_a_bank_bigger_than_the_process_share_stays_in_host_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    """Four trials on one 80 GiB GPU: this one may use 20 GiB; the GPU still shows 60 GiB free. The bank (which
    needs more than half of what is left of the share) stays on the host, and batches are copied over."""
    gib = 2**30
    feats = [np.zeros((40, 8), np.float32)]
    bank = WindowBank(feats, [np.zeros(40, np.float32)], width=5, shift=1)
    need = bank.data.numel() * 4 + bank.starts.numel() * 8
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (60 * gib, 80 * gib))
    monkeypatch.setattr(torch.cuda, "get_per_process_memory_fraction", lambda device=None: 0.25, raising=False)
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: 20 * gib - need)  # share nearly used up
    bank.to("cuda")
    assert bank.data.device.type == "cpu" and bank.starts.device.type == "cpu"
    assert bank.device == torch.device("cuda")  # batches are delivered there, copied per batch
