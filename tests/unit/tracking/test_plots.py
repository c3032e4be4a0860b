"""save_figure: the one atomic PNG writer used by every plot (curves, confusion matrix, reports, sweeps)."""

from __future__ import annotations

from pathlib import Path

import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from paraling.tracking.plots import plt, save_figure

PNG = b"\x89PNG\r\n\x1a\n"


def test_save_figure_writes_pyplot_and_bare_figures_atomically(tmp_path: Path) -> None:
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    assert save_figure(fig, tmp_path / "a" / "py.png") == tmp_path / "a" / "py.png"
    assert not plt.fignum_exists(fig.number), "pyplot figures are closed"
    bare = Figure()
    FigureCanvasAgg(bare)
    bare.add_subplot().plot([0, 1])
    save_figure(bare, tmp_path / "a" / "bare.png", dpi=50)
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["bare.png", "py.png"]  # no temp files
    assert all(p.read_bytes()[:8] == PNG for p in (tmp_path / "a").iterdir())


def test_save_figure_failure_leaves_neither_file_nor_open_figure(tmp_path: Path, monkeypatch) -> None:
    fig, _ = plt.subplots()

    def broken(*args, **kwargs):
        Path(args[0]).write_bytes(PNG)  # half-written
        raise OSError("disk full")

    monkeypatch.setattr(fig, "savefig", broken)
    with pytest.raises(OSError, match="disk full"):
        save_figure(fig, tmp_path / "x.png")
    assert list(tmp_path.iterdir()) == [] and not plt.fignum_exists(fig.number)
