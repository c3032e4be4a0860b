"""What ``scripts/gpu-check.sh`` reads back after each step: the demo run and the sweep, from MLflow and Optuna.

    python scripts/gpu_check.py demo  OUT.json WALL_SECONDS EXPECTED_DEVICE EXPECTED_CAPTURE
    python scripts/gpu_check.py sweep OUT.json STORAGE STUDY N_TRIALS EXPECTED_DEVICE [GPU]
    python scripts/gpu_check.py ssl   OUT.json EXPECTED_DEVICE

Each prints one summary line and exits 1 when a check fails (the line then says which). MLflow is read from
``MLFLOW_TRACKING_URI``. Only public MLflow and Optuna APIs, and only the tags and metrics paraling documents
(docs/mlflow-ui.md): ``paraling.training.device``, ``paraling.training.capture``, ``windows_per_s/fold0``,
``paraling.gpu``, ``paraling.sweep.study``, ``paraling.encoder``, ``data.encoder_precision``, ``features_computed``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from mlflow.tracking import MlflowClient


def _latest_run(client: MlflowClient, experiment: str = "paraling") -> Any:
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        raise SystemExit(f"no MLflow experiment {experiment!r} at {client.tracking_uri}")
    runs = client.search_runs([exp.experiment_id], order_by=["attributes.start_time DESC"], max_results=1)
    if not runs:
        raise SystemExit(f"no run in MLflow experiment {experiment!r}")
    return runs[0]


def _check(problems: list[str], ok: bool, what: str) -> None:
    if not ok:
        problems.append(what)


def demo(out: str, wall: str, device: str, capture: str) -> int:
    """The demo run: FINISHED, UAR above chance, trained on ``device`` with the ``capture`` step."""
    run = _latest_run(MlflowClient())
    tags, metrics = run.data.tags, run.data.metrics
    classes = json.loads(run.data.params["data.classes"])
    got = {
        "status": run.info.status,
        "uar": metrics.get("uar"),
        "chance": 1 / len(classes),
        "training_seconds": metrics.get("seconds"),
        "wall_seconds": float(wall),
        "device": tags.get("paraling.training.device"),
        "capture": tags.get("paraling.training.capture"),
        "windows_per_s_fold0": metrics.get("windows_per_s/fold0"),
    }
    Path(out).write_text(json.dumps(got, indent=2))
    problems: list[str] = []
    _check(problems, got["status"] == "FINISHED", f"status {got['status']}")
    _check(problems, got["uar"] is not None and got["uar"] > got["chance"], f"UAR {got['uar']} not above chance")
    _check(problems, str(got["device"]).split(":")[0] == device, f"device tag {got['device']!r}, expected {device}")
    _check(problems, got["capture"] == capture, f"capture tag {got['capture']!r}, expected {capture!r}")
    _check(problems, bool(got["windows_per_s_fold0"]), "no windows_per_s/fold0 metric")
    print(
        f"demo: {got['status']}, UAR {got['uar']:.3f} (chance {got['chance']:.3f}) on {got['device']}, step "
        f"{got['capture']}, {got['windows_per_s_fold0'] or 0:.0f} windows/s (fold 0), {got['training_seconds']:.0f} s "
        f"in the run, {float(wall):.0f} s wall" + (f"  <-- FAILED: {'; '.join(problems)}" if problems else "")
    )
    return 1 if problems else 0


def sweep(out: str, storage: str, study_name: str, n_trials: str, device: str, gpu: str = "") -> int:
    """The sweep: ``n_trials`` COMPLETE trials, nothing RUNNING in Optuna or MLflow, each trial's device (and GPU)."""
    import optuna

    from paraling.search.storage import make_storage

    study = optuna.load_study(study_name=study_name, storage=make_storage(storage))
    trials = study.get_trials(deepcopy=False)
    client = MlflowClient()
    runs = client.search_runs(
        [e.experiment_id for e in client.search_experiments()],
        filter_string=f"tags.`paraling.sweep.study` = '{study_name}'",
    )
    children = [r for r in runs if "paraling.sweep.trial" in r.data.tags]
    got = {
        "trials": {t.number: t.state.name for t in trials},
        "trial_gpus": {t.number: t.user_attrs.get("gpu") for t in trials},
        "trial_gpu_shares": {t.number: t.user_attrs.get("gpu_share") for t in trials},
        "runs": {r.info.run_id: r.info.status for r in runs},
        "child_devices": sorted(str(r.data.tags.get("paraling.training.device")) for r in children),
        "child_captures": sorted(str(r.data.tags.get("paraling.training.capture")) for r in children),
    }
    Path(out).write_text(json.dumps(got, indent=2))
    problems: list[str] = []
    states = list(got["trials"].values())
    _check(problems, states.count("COMPLETE") == int(n_trials), f"trial states {states}")
    _check(problems, "RUNNING" not in states, "an Optuna trial is left RUNNING")
    _check(problems, "RUNNING" not in got["runs"].values(), "an MLflow run is left RUNNING")
    _check(problems, len(children) == int(n_trials), f"{len(children)} child runs for {n_trials} trials")
    devices = {d.split(":")[0] for d in got["child_devices"]}
    _check(problems, devices == {device}, f"child runs trained on {sorted(devices)}, expected {device}")
    if gpu:
        _check(problems, set(got["trial_gpus"].values()) == {gpu}, f"trial GPUs {got['trial_gpus']}")
    print(
        f"sweep: {states.count('COMPLETE')} of {n_trials} trials COMPLETE, {len(runs)} MLflow runs "
        f"({', '.join(sorted(set(got['runs'].values())))}), trials on {sorted(devices)}"
        + (f", GPUs {sorted(set(map(str, got['trial_gpus'].values())))}" if gpu else "")
        + f", steps {sorted(set(got['child_captures']))}"
        + (f"  <-- FAILED: {'; '.join(problems)}" if problems else "")
    )
    return 1 if problems else 0


def ssl(out: str, device: str) -> int:
    """The ``features=ssl`` run: FINISHED, trained on ``device``, the encoder recorded, every recording extracted
    once, in bf16 (or fp16) on a GPU and fp32 on the CPU."""
    run = _latest_run(MlflowClient(), "gpu-check-ssl")
    tags, metrics, params = run.data.tags, run.data.metrics, run.data.params
    got = {
        "status": run.info.status,
        "uar": metrics.get("uar"),
        "device": tags.get("paraling.training.device"),
        "encoder": tags.get("paraling.encoder"),
        "precision": params.get("data.encoder_precision"),
        "features_computed": metrics.get("features_computed"),
        "n_utterances": int(params.get("data.n_utterances", 0)),
    }
    Path(out).write_text(json.dumps(got, indent=2))
    problems: list[str] = []
    _check(problems, got["status"] == "FINISHED", f"status {got['status']}")
    _check(problems, str(got["device"]).split(":")[0] == device, f"device tag {got['device']!r}, expected {device}")
    _check(problems, str(got["encoder"]).startswith("folder:"), f"encoder tag {got['encoder']!r}")
    want = ("bfloat16", "float16") if device == "cuda" else ("float32",)
    _check(problems, got["precision"] in want, f"extraction precision {got['precision']!r}, expected one of {want}")
    _check(problems, got["features_computed"] == got["n_utterances"], f"{got['features_computed']} extractions")
    print(
        f"ssl: {got['status']}, UAR {got['uar'] or 0:.3f} on {got['device']}, encoder {got['encoder']}, extracted in "
        f"{got['precision']}, {got['features_computed'] or 0:.0f} of {got['n_utterances']} recordings extracted"
        + (f"  <-- FAILED: {'; '.join(problems)}" if problems else "")
    )
    return 1 if problems else 0


if __name__ == "__main__":
    commands = {"demo": demo, "sweep": sweep, "ssl": ssl}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        raise SystemExit(__doc__)
    sys.exit(commands[sys.argv[1]](*sys.argv[2:]))
