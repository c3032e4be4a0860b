"""Ensembles from a real MLflow store filled by real tiny `run_experiment` runs; registry; pyfunc == CLI."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from omegaconf import OmegaConf

from paraling.cli.main import main as cli_main
from paraling.config import compose
from paraling.ensemble.assembly import assemble_ensemble
from paraling.errors import EnsembleError
from paraling.pipeline.experiment import run_experiment
from paraling.scoring.oof import load_oof
from paraling.serving.predict import Predictor
from paraling.tracking.model_fetch import fetch_model
from paraling.tracking.runs import find_runs, make_client


def _cfg(csv: Path, root: Path, uri: str, experiment: str, **overrides: Any) -> Any:
    cfg = compose(
        [
            "corpus=csv",
            f"corpus.path={csv}",
            "trainer.epochs=1",
            "cv.folds=2",
            "model.channels=[8,8,8]",
            "model.fc_sizes=[32]",
            f"tracking.uri={uri}",
            f"tracking.experiment={experiment}",
            "device=cpu",
            f"cache_dir={root / 'cache'}",
            "progress=never",
            "trainer.checkpoint=false",
        ]
    )
    for k, v in overrides.items():
        OmegaConf.update(cfg, k, v)
    return cfg


@pytest.fixture(scope="module")
def store(tone_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Three aligned runs (one without a logged model, like a baseline) and one run with other folds."""
    root = tmp_path_factory.mktemp("ens")
    uri = f"sqlite:///{root / 'mlruns' / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        mp.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        runs = {
            "a": run_experiment(_cfg(tone_corpus, root, uri, "lib", name="a")),
            "b": run_experiment(
                _cfg(
                    tone_corpus,
                    root,
                    uri,
                    "lib",
                    name="b",
                    **{"aggregation.kind": "logmean", "model.channels": [4, 8, 8], "features.normalize": "global"},
                )
            ),
            "c": run_experiment(
                _cfg(tone_corpus, root, uri, "lib", name="c", **{"windows.width": 9, "tracking.log_model": False})
            ),
            "x": run_experiment(_cfg(tone_corpus, root, uri, "other", name="x", seed=7)),
        }
        yield {
            "root": root,
            "uri": uri,
            "csv": tone_corpus,
            "ids": {k: r.run_id for k, r in runs.items()},
            "results": runs,
        }


def test_find_runs_and_predictability(store: dict[str, Any]) -> None:
    ids = store["ids"]
    runs = find_runs("lib", uri=store["uri"])
    assert [r.run_id for r in runs] == [ids["a"], ids["b"], ids["c"]]
    ok = {r.config_name: (r.predictable, r.why_not) for r in runs}
    assert ok["a"] == (True, "") and ok["b"] == (True, "")
    assert not ok["c"][0] and "spec.json" in ok["c"][1]
    with pytest.raises(EnsembleError, match="no MLflow experiment 'nope'"):
        find_runs("nope", uri=store["uri"])
    client = make_client(store["uri"])
    client.set_tag(ids["c"], "paraling.role", "pretrain")  # pre-training runs are never members
    try:
        kept = find_runs("lib", uri=store["uri"], check_model=False)
        assert [r.run_id for r in kept] == [ids["a"], ids["b"]]
    finally:
        client.delete_tag(ids["c"], "paraling.role")


def test_study_filter_uses_parent_tags(store: dict[str, Any]) -> None:
    ids, client = store["ids"], make_client(store["uri"])
    exp = client.get_experiment_by_name("lib")
    parent = client.create_run(exp.experiment_id, tags={"paraling.sweep.study": "s1"}).info.run_id
    client.set_terminated(parent)
    client.set_tag(ids["b"], "mlflow.parentRunId", parent)
    assert [r.run_id for r in find_runs("lib", study="s1", uri=store["uri"])] == [ids["b"]]
    client.set_tag(ids["c"], "optuna.study", "s2")  # a run tagged itself
    assert [r.run_id for r in find_runs("lib", study="s2", uri=store["uri"])] == [ids["c"]]
    with pytest.raises(EnsembleError, match="study 'nobody'"):
        find_runs("lib", study="nobody", uri=store["uri"])


def test_misaligned_runs_are_refused_by_name(store: dict[str, Any]) -> None:
    ids = store["ids"]
    with pytest.raises(EnsembleError) as err:
        assemble_ensemble(run_ids=[ids["a"], ids["x"]], uri=store["uri"], log_run=False)
    assert ids["a"] in str(err.value) and ids["x"] in str(err.value) and "fold" in str(err.value)


def test_runs_on_other_audio_with_the_same_file_names_are_refused(
    store: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Same ids, labels, speakers and folds (so the manifest digest matches), other recordings: not one corpus."""
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(store["csv"].parent, copy)
    for wav in sorted(copy.rglob("*.wav")):
        x, sr = sf.read(wav)
        sf.write(wav, np.roll(x, 97) * 0.9, sr)  # other audio under the same name
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store["uri"])
    other = run_experiment(_cfg(copy / store["csv"].name, tmp_path, store["uri"], "lib", name="a-other-audio"))
    client = make_client(store["uri"])
    a, b = client.get_run(store["ids"]["a"]), client.get_run(other.run_id)
    assert a.data.tags["paraling.manifest_digest"] == b.data.tags["paraling.manifest_digest"]
    assert a.data.tags["paraling.audio_digest"] != b.data.tags["paraling.audio_digest"]
    with pytest.raises(EnsembleError, match=r"audio \(same file names, other recordings\)") as err:
        assemble_ensemble(run_ids=[store["ids"]["a"], other.run_id], uri=store["uri"], log_run=False)
    assert other.run_id in str(err.value)
    client.delete_run(other.run_id)  # the module's other tests see the store as it was


def test_ensemble_run_registry_and_pyfunc_equals_cli(
    store: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    uri, ids = store["uri"], store["ids"]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    assert (
        cli_main(
            [
                "ensemble",
                "--experiment",
                "lib",
                "--combiner",
                "harmonic",
                "--tracking-uri",
                uri,
                "--register",
                "tone",
                "--alias",
                "champion",
                "--max-iter",
                "10",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "nested-CV UAR" in out and "best single run" in out and "skipped (cannot predict" in out
    client = make_client(uri)
    version = client.get_model_version_by_alias("tone", "champion")
    run = client.get_run(version.run_id)
    assert version.tags["paraling.members"] == run.data.tags["paraling.members"]
    m = run.data.metrics
    assert run.info.status == "FINISHED" and run.data.tags["paraling.kind"] == "ensemble"
    for key in (
        "uar",
        "uar_nested",
        "uar_best_single_nested",
        "uar_selection",
        "uar_best_single",
        "uar_fold0",
        "uar_fold1",
        "uar_selection_fold0",
    ):
        assert key in m, key
    assert m["uar_selection"] >= m["uar_best_single"]
    members = json.loads(run.data.params["members"])
    assert set(members) <= {ids["a"], ids["b"]} and ids["c"] not in run.data.tags["paraling.members"]
    arts = {f.path for f in client.list_artifacts(run.info.run_id)}
    assert {"ensemble.json", "plots", "oof", "model"} <= arts
    plots = {f.path for f in client.list_artifacts(run.info.run_id, "plots")}
    assert plots == {"plots/trajectory.png", "plots/confusion_matrix.png"}
    # a later ensemble never takes an ensemble run as a member
    assert ids["a"] in [r.run_id for r in find_runs("lib", uri=uri, check_model=False)]
    assert run.info.run_id not in [r.run_id for r in find_runs("lib", uri=uri, check_model=False)]

    audio = tmp_path / "audio"
    audio.mkdir()
    (audio / "empty.wav").write_bytes(b"")
    (audio / "junk.wav").write_bytes(b"RIFF1234WAVEjunk" * 4)
    t = np.arange(int(0.7 * 44100)) / 44100
    sf.write(
        audio / "stereo44k.wav", np.stack([np.sin(2 * np.pi * 1500 * t), np.sin(2 * np.pi * 200 * t)], 1) * 0.2, 44100
    )
    good = sorted(str(p) for p in (store["csv"].parent / "wav").glob("s0_*.wav"))[:3]
    files = [*good, str(audio / "empty.wav"), str(audio / "stereo44k.wav"), str(audio / "junk.wav")]
    model = mlflow.pyfunc.load_model("models:/tone@champion")
    got = model.predict(pd.DataFrame({"path": files}))
    preds = tmp_path / "preds.csv"
    assert (
        cli_main(["predict", "--model", "models:/tone@champion", "--tracking-uri", uri, *files, "--out", str(preds)])
        == 0
    )
    cli = pd.read_csv(preds, keep_default_na=False)
    assert list(got["label"]) == list(cli["label"])
    assert got["error"].astype(bool).tolist() == [False, False, False, True, False, True]
    proba = [c for c in got.columns if c.startswith("proba_")]
    assert proba == ["proba_high", "proba_low", "proba_noise"]
    ok = ~got["error"].astype(bool)
    np.testing.assert_allclose(
        got.loc[ok, proba].to_numpy(float), cli.loc[ok, proba].to_numpy(float), rtol=1e-12, atol=1e-15
    )


def test_single_run_is_a_model(store: dict[str, Any], tmp_path: Path) -> None:
    """A `paraling train` run predicts from its run id; fold k's CNN + vote reproduce its out-of-fold scores."""
    rid, uri = store["ids"]["a"], store["uri"]
    folder = fetch_model(rid, tmp_path / "dl", uri)
    again = Predictor.load(fetch_model(f"runs:/{rid}", tmp_path / "dl2", uri))
    assert again.classes == ["high", "low", "noise"]
    oof = store["results"]["a"].oof
    client = make_client(uri)
    manifest_file = Path(client.download_artifacts(rid, "data/manifest.jsonl", str(tmp_path)))
    manifest = [json.loads(line) for line in manifest_file.read_text().splitlines()]
    path = {u["id"]: u["path"] for u in manifest}
    p = Predictor.load(folder)
    member, folds = p.members[0], list(p.members[0].folds)
    for f in folds:
        member.folds = [f]
        sel = oof.fold == f.fold
        got = np.stack([r.proba for r in p.predict([path[u] for u in oof.utt_ids[sel]])])
        np.testing.assert_allclose(got, oof.proba[sel], atol=1e-5)
    member.folds = folds
    stored = load_oof(Path(client.download_artifacts(rid, "oof/scores.npz", str(tmp_path))))
    np.testing.assert_allclose(stored.proba, oof.sorted().proba, atol=1e-6)
