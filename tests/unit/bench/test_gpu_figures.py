"""The GPU bench's training figures: each labelled by the step mode that ran, and no crash when every mode fails."""

from __future__ import annotations

import math

from paraling.bench.gpu import capture_figures
from paraling.bench.speed import TrainSpeed


def test_a_graph_that_fell_back_is_labelled_by_what_ran() -> None:
    asked = {
        "eager": TrainSpeed(1000.0, "eager"),
        "graph": TrainSpeed(1100.0, "eager (graph capture failed)"),
    }
    figures, head = capture_figures(asked, naive=100.0)
    names = [f.name for f in figures]
    assert "(a) capture=eager (graph capture failed) (asked: graph)" in names
    assert "(a) capture=graph" not in names
    assert head == 1100.0  # the graph did not run: the headline is the fastest mode that ran, and says which
    assert "step as run: eager (graph capture failed)" in figures[0].note


def test_the_graph_is_the_headline_when_it_ran() -> None:
    figures, head = capture_figures(
        {"eager": TrainSpeed(1000.0, "eager"), "graph": TrainSpeed(900.0, "graph (staged batches)")}, naive=100.0
    )
    assert head == 900.0 and figures[0].ratio == 9.0
    assert "(a) capture=graph (staged batches) (asked: graph)" in [f.name for f in figures]


def test_every_mode_failing_is_reported_not_a_crash() -> None:
    figures, head = capture_figures({"eager": RuntimeError("boom"), "graph": RuntimeError("no")}, naive=100.0)
    assert head is None
    assert figures[0].note.startswith("FAILED") and math.isnan(figures[0].value)
    assert any("failed: RuntimeError: boom" in f.note for f in figures)
