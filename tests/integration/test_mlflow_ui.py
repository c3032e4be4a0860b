"""The MLflow UI as a user sees it, in headless Chromium, over a store written by a tiny sweep and a tiny train run.

A real ``mlflow server`` on 127.0.0.1 receives a 2-trial sweep with an ``ensemble:`` block and one ``paraling
train`` run; Playwright drives Debian's Chromium to the links paraling prints and checks what a person sees: the
training-runs table (not the GenAI overview), the sweep parent expanding to its trials and its ensemble, a UAR
column, the Dataset column naming the corpus, and one chart section per quantity on a trial's page. With
``PARALING_UI_SHOTS=DIR`` it also saves the two screenshots the docs show.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from paraling.cli.main import main
from paraling.search import SweepOptions, run_sweep
from paraling.search.spec import load_study_spec
from paraling.tracking.ui import experiment_url, run_url

pytestmark = [pytest.mark.service, pytest.mark.slow]

CORPUS = "tones"


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail("Chromium is missing: bash scripts/install.sh --dev installs it (Debian package chromium)")
    return path


def _populate(server: str, corpus: Path, folder: Path, tiny: list[str]) -> None:
    ov = [*tiny, f"tracking.uri={server}", f"corpus.name={CORPUS}", "progress=never"]
    study = folder / "ui.yaml"
    study.write_text(
        yaml.safe_dump(
            {
                "study_name": "ui",
                "space": {"windows.width": [11, 15]},
                "sampler": {"name": "grid"},
                "pruner": {"name": "none"},
                "n_trials": 2,
                "ensemble": {"method": "all", "combiner": "mean"},
            }
        )
    )
    run_sweep(load_study_spec(study), SweepOptions(overrides=ov))
    assert main(["train", *ov, "name=single"]) == 0


def _save(page: object, name: str) -> None:
    shots = os.environ.get("PARALING_UI_SHOTS")
    if shots:
        Path(shots).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(shots) / name))  # type: ignore[attr-defined]


def test_runs_table_parent_children_and_chart_sections(
    mlflow_server: str, tone_corpus: Path, tmp_path: Path, tiny_overrides: object
) -> None:
    from playwright.sync_api import expect, sync_playwright

    tiny = tiny_overrides(tone_corpus, tmp_path / "cache", epochs=3)  # type: ignore[operator]
    _populate(mlflow_server, tone_corpus, tmp_path, tiny)
    client = MlflowClient(mlflow_server)
    exp = client.get_experiment_by_name("paraling")
    runs = client.search_runs([exp.experiment_id])
    parent = next(r for r in runs if r.data.tags.get("paraling.role") == "sweep")
    trial = next(r for r in runs if r.data.tags.get("paraling.sweep.trial") == "0")
    ensemble_id = parent.data.tags["paraling.sweep.ensemble_run_id"]
    ensemble = client.get_run(ensemble_id)
    assert ensemble.data.tags["mlflow.parentRunId"] == parent.info.run_id

    expect.set_options(timeout=60_000)  # the first page load compiles MLflow's UI bundle in the browser
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=_chromium(), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 640})
            page.set_default_timeout(90_000)
            # the experiment link opens the training-runs table, not the GenAI overview (traces, token usage)
            page.goto(experiment_url(mlflow_server, exp.experiment_id), wait_until="load")
            expect(page.get_by_role("columnheader", name="Run Name").first).to_be_visible()
            close = page.get_by_role("button", name="Close", exact=True)
            if close.count():  # MLflow's assistant side panel takes a third of the width: close it, as a user would
                close.first.click()
            body = page.inner_text("body")
            assert "Token Usage" not in body and "No data available for the selected time range" not in body
            # the runs table: the single run and the sweep's parent; the parent expands to its trials and ensemble
            expect(page.get_by_text("single-seed0")).to_be_visible()
            expect(page.get_by_text(parent.info.run_name, exact=True)).to_be_visible()
            assert page.get_by_text("ui-000", exact=True).count() == 0  # children start folded under the parent
            row = page.get_by_role("row").filter(has_text=parent.info.run_name)
            row.get_by_role("button").first.click()
            for child in ("ui-000", "ui-001", ensemble.info.run_name):
                expect(page.get_by_text(child, exact=True)).to_be_visible()
            # the Dataset column names the corpus
            expect(page.get_by_role("columnheader", name="Dataset").first).to_be_visible()
            assert page.get_by_text(re.compile(rf"^{CORPUS} \(")).count() >= 3
            # the Models column links the train run's CNN (an MLflow logged model named after the config)
            expect(page.get_by_role("columnheader", name="Models").first).to_be_visible()
            expect(page.get_by_text("single", exact=True).first).to_be_visible()  # (the grid splits rows in two)
            # the UAR column: as a user adds it from "Columns"
            page.get_by_role("button", name="Columns", exact=True).first.click()
            page.get_by_placeholder("Search columns").fill("uar")
            title = page.locator("[class*=tree-title]").filter(has_text=re.compile(r"^uar$"))
            node = page.locator("[class*=tree-treenode]").filter(has=title)
            node.locator("[class*=tree-checkbox]").first.click()  # the column picker is a checkable tree
            page.keyboard.press("Escape")
            expect(page.get_by_role("columnheader", name="uar", exact=True).first).to_be_visible()
            _save(page, "mlflow-runs.png")
            # a trial's chart view: one section per quantity (val_uar/fold0, val_uar/fold1 in "val_uar")
            page.goto(run_url(mlflow_server, exp.experiment_id, trial.info.run_id, "model-metrics"), wait_until="load")
            for section in ("val_uar", "train_loss", "val_loss"):
                expect(page.get_by_text(section, exact=True).first).to_be_visible()
            body = page.inner_text("body")
            assert not re.search(r"fold\d_val_uar", body), "one chart per fold and quantity again"
            page.get_by_placeholder("Search metric charts").fill("val_uar")  # the section a reader looks at first
            expect(page.get_by_text("val_uar", exact=True).first).to_be_visible()
            page.wait_for_timeout(1500)
            _save(page, "mlflow-charts.png")
        finally:
            browser.close()
