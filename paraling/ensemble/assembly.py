"""Ensembles of tracked runs as MLflow runs (``paraling ensemble``).

:func:`assemble_ensemble` reads the out-of-fold scores of finished runs (:mod:`paraling.tracking.runs`), refuses
misaligned runs, selects an ensemble (:mod:`paraling.ensemble`), evaluates it honestly with nested cross-validation
next to the best single run, and logs the result as an MLflow run tagged ``paraling.kind=ensemble`` (members,
weights, trajectory plot, per-fold UAR, WA and macro-F1 of the selection set, confusion matrix, ``ensemble.json``,
the ensemble's own ``oof/scores.npz``).

With ``register=NAME`` the ensemble is also logged as an MLflow pyfunc model and registered under ``NAME`` with an
alias (default ``champion``) through :mod:`paraling.tracking.registry`. Only runs predictable from audio enter a
registered ensemble: the candidates are restricted to them before selection (utterance-level baselines are skipped
with a message), so the registered model is exactly the evaluated ensemble.

Example:
    >>> res = assemble_ensemble("paraling", combiner="harmonic", register="eating")  # doctest: +SKIP
    >>> mlflow.pyfunc.load_model("models:/eating@champion").predict(df)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from paraling.ensemble import EnsembleReport, evaluate_selection, make_selector, stack_oof
from paraling.errors import EnsembleError
from paraling.scoring.metrics import accuracy, confusion_matrix, macro_f1
from paraling.scoring.oof import OOFScores, save_oof
from paraling.tracking.bundle import save_bundle
from paraling.tracking.plots import plot_confusion_matrix
from paraling.tracking.registry import log_pyfunc, register_model
from paraling.tracking.runs import (
    MEMBERS_TAG,
    NAME_TAG,
    NEGATIVE_CLASS_TAG,
    TrackedRun,
    find_runs,
    load_scores,
    make_client,
)
from paraling.tracking.tracker import RunTracker, mask_secrets

__all__ = ["EnsembleResult", "assemble_ensemble", "format_summary"]

log = logging.getLogger(__name__)


@dataclass
class EnsembleResult:
    """What :func:`assemble_ensemble` did.

    Attributes:
        runs: Candidate runs (the library), in stack order.
        report: Selection and evaluation (:class:`paraling.ensemble.EnsembleReport`).
        skipped: Runs left out because they cannot predict from audio (only with ``register``), with reasons.
        run_id: The ensemble's MLflow run, or ``None`` when not logged.
        model_uri: ``models:/NAME@alias`` (or ``/version``) when registered.
        version: Registered model version.
        classes: Class names.
    """

    runs: list[TrackedRun]
    report: EnsembleReport
    skipped: list[TrackedRun] = field(default_factory=list)
    run_id: str | None = None
    model_uri: str | None = None
    version: str | None = None
    classes: list[str] = field(default_factory=list)

    @property
    def members(self) -> list[tuple[TrackedRun, int]]:
        """``(run, weight)`` of the runs with a non-zero weight."""
        return [(r, int(w)) for r, w in zip(self.runs, self.report.weights, strict=True) if w > 0]


def assemble_ensemble(
    experiment: str | None = None,
    *,
    study: str | None = None,
    run_ids: Sequence[str] = (),
    names: Sequence[str] = (),
    method: str = "greedy",
    combiner: str = "mean",
    top_k: int | None = None,
    max_iter: int = 50,
    bagging: int = 0,
    bag_fraction: float = 0.5,
    seed: int = 0,
    uri: str | None = None,
    register: str | None = None,
    alias: str | None = "champion",
    log_run: bool = True,
    run_name: str | None = None,
    parent_run_id: str | None = None,
) -> EnsembleResult:
    """Build, evaluate, track and optionally register an ensemble of finished runs.

    Args:
        experiment: MLflow experiment holding the candidate runs (the ensemble run is logged there too; with
            ``run_ids`` and no experiment, the first run's experiment).
        study: Only runs of this sweep (see :func:`paraling.tracking.runs.find_runs`).
        run_ids: Exactly these runs instead of searching ``experiment``.
        names: Exactly the newest finished run of each of these names (tag ``paraling.name``) in ``experiment``
            (:func:`paraling.tracking.runs.find_runs`), e.g. ``net0 net2 net3 net5`` for the Table 1 ensemble. With
            ``register`` every one of them must be predictable from audio (none is silently left out).
        method: ``greedy``, ``top-k`` or ``all`` (:func:`paraling.ensemble.make_selector`).
        combiner: ``mean``, ``harmonic``, ``geometric`` or ``weighted``.
        top_k: Greedy: size of the sorted initialisation; ``top-k``: number of members.
        max_iter: Greedy additions.
        bagging: Greedy bags (0 = none).
        bag_fraction: Fraction of the library in each bag.
        seed: Bagging seed.
        uri: Tracking (and registry) URI.
        register: Registered model name; ``None`` = do not register.
        alias: Alias set on the new version (``None`` = none).
        log_run: Log the ensemble as an MLflow run (required by ``register``).
        run_name: Name of the ensemble run.
        parent_run_id: Log the ensemble run as a child of this run (a sweep's parent run).

    Raises:
        EnsembleError: No candidates, misaligned runs (named), a name without a finished run (named), nothing
            predictable to register, or named runs that cannot be registered.
    """
    client = make_client(uri)
    selector = make_selector(
        method, combiner, top_k=top_k, max_iter=max_iter, bagging=bagging, bag_fraction=bag_fraction, seed=seed
    )
    runs = find_runs(
        experiment, study=study, run_ids=run_ids, names=names, client=client, check_model=register is not None
    )
    skipped: list[TrackedRun] = []
    if register:
        skipped = [r for r in runs if not r.predictable]
        if names and skipped:
            raise EnsembleError(
                f"cannot register the ensemble of {', '.join(names)}: "
                f"{'; '.join(f'{r.label}: {r.why_not}' for r in skipped)}. Fix: drop --register to log the "
                "ensemble as a run only, or leave those names out to register the rest"
            )
        runs = [r for r in runs if r.predictable]
        for r in skipped:
            log.warning("not in the registered ensemble: %s (%s): %s", r.label, r.kind, r.why_not)
        if not runs:
            raise EnsembleError(
                f"none of the runs can predict from audio, so nothing can be registered: "
                f"{'; '.join(f'{r.label}: {r.why_not}' for r in skipped)}"
            )
    with tempfile.TemporaryDirectory(prefix="paraling-ensemble-") as tmp_name:
        tmp = Path(tmp_name)
        scores = load_scores(runs, tmp / "scores", client=client)
        audio = [r.tags.get("paraling.audio_digest") for r in runs]
        S, y, fold = stack_oof(scores, [f"{r.run_id} ({r.name})" for r in runs], audio)
        ref = scores[0].sorted()
        report = evaluate_selection(S, y, fold, ref.split, selector)
        result = EnsembleResult(runs, report, skipped, classes=[str(c) for c in ref.classes])
        if log_run or register:
            _log_ensemble(
                result,
                ref,
                client,
                tmp,
                experiment,
                uri,
                register,
                alias,
                run_name,
                {
                    "method": method,
                    "combiner": combiner,
                    "top_k": top_k,
                    "max_iter": max_iter,
                    "bagging": bagging,
                    "bag_fraction": bag_fraction,
                    "seed": seed,
                    "study": study,
                    "names": json.dumps(list(names)) if names else None,
                    "source_experiment": experiment,
                },
                parent_run_id,
            )
    return result


def _metrics(rep: EnsembleReport) -> dict[str, float]:
    m: dict[str, float] = {
        "uar_selection": rep.selection_uar,
        "uar_best_single": rep.best_single_uar,
        "n_members": float(np.count_nonzero(rep.weights)),
        "ensemble_size": float(rep.weights.sum()),
    }
    m.update({f"uar_selection_fold{f}": v for f, v in rep.fold_uar.items()})
    if rep.nested:
        m["uar_nested"] = m["uar"] = rep.nested["ensemble_uar"]
        m["uar_best_single_nested"] = rep.nested["single_uar"]
        nested = zip(rep.nested["folds"], rep.nested["ensemble_fold_uar"], rep.nested["single_fold_uar"], strict=True)
        for f, e, s in nested:
            m[f"uar_fold{f}"], m[f"uar_best_single_nested_fold{f}"] = e, s
    else:
        m["uar"] = rep.selection_uar
    if rep.test_uar is not None:
        m["uar_test"] = rep.test_uar
        m["uar_best_single_test"] = float(rep.best_single_test_uar or 0.0)
    return m


def _describe(result: EnsembleResult) -> dict[str, Any]:
    rep = result.report
    est = rep.selector
    return {
        "classes": result.classes,
        "members": [{"run_id": r.run_id, "name": r.name, "weight": w, "kind": r.kind} for r, w in result.members],
        "candidates": [
            {"run_id": r.run_id, "name": r.name, "weight": int(w), "single_uar": float(s)}
            for r, w, s in zip(result.runs, rep.weights, est.single_scores_, strict=True)
        ],
        "skipped": [{"run_id": r.run_id, "name": r.name, "reason": r.why_not} for r in result.skipped],
        "selection_order": [result.runs[i].run_id for i in est.selection_],
        "trajectory": est.trajectory_,
        "bag_trajectories": est.bag_trajectories_,
        "nested": rep.nested,
        "metrics": _metrics(rep),
    }


def _plot_trajectory(result: EnsembleResult, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from paraling.tracking.plots import save_figure

    est, rep = result.report.selector, result.report
    fig = Figure(figsize=(6.4, 3.8))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for i, traj in enumerate(est.bag_trajectories_):
        ax.plot(np.arange(1, len(traj) + 1), traj, color="0.75", lw=0.8, label="bags" if i == 0 else None)
    traj = est.trajectory_
    start = getattr(est, "n_init", 1) if not est.bag_trajectories_ else 1
    x = np.arange(start, start + len(traj))
    ax.plot(x, traj, marker="o", ms=3, label="ensemble (selection set)")
    best = int(np.argmax(traj))
    ax.axvline(x[best], color="C2", ls=":", label=f"kept: step {x[best]}")
    ax.axhline(rep.best_single_uar, color="C3", ls="--", label=f"best single {rep.best_single_uar:.3f}")
    if rep.nested:
        ax.axhline(
            rep.nested["ensemble_uar"],
            color="C1",
            ls="-.",
            label=f"nested-CV ensemble {rep.nested['ensemble_uar']:.3f}",
        )
        ax.axhline(
            rep.nested["single_uar"], color="C4", ls=":", label=f"nested-CV best single {rep.nested['single_uar']:.3f}"
        )
    xlabel = "bag" if est.bag_trajectories_ else "ensemble size (models, with repeats)"
    ax.set(xlabel=xlabel, ylabel="UAR", title="ensemble selection trajectory")
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path)


def _log_ensemble(
    result: EnsembleResult,
    ref: OOFScores,
    client: Any,
    tmp: Path,
    experiment: str | None,
    uri: str | None,
    register: str | None,
    alias: str | None,
    run_name: str | None,
    params: dict[str, Any],
    parent_run_id: str | None = None,
) -> None:
    rep, first = result.report, result.runs[0]
    members = result.members
    tags = {
        "paraling.kind": "ensemble",
        NAME_TAG: run_name or "ensemble",
        MEMBERS_TAG: ",".join(r.run_id for r, _ in members),
    }
    for t in (
        "paraling.manifest_digest",
        "paraling.audio_digest",
        "paraling.fold_digest",
        "paraling.corpus",
        NEGATIVE_CLASS_TAG,
    ):
        if t in first.tags:
            tags[t] = first.tags[t]
    if experiment is None:  # explicit run ids: log next to the first member
        experiment = client.get_experiment(first.experiment_id).name
    tracker = RunTracker(experiment, uri, run_name or f"ensemble-{params['method']}", parent_run_id, tags=tags)
    with tracker.running():
        tracker.log_params(
            {
                **params,
                "n_candidates": len(result.runs),
                "members": json.dumps([r.run_id for r, _ in members]),
                "weights": json.dumps([w for _, w in members]),
            }
        )
        y_sel, pred_sel = ref.y[rep.selection_mask], rep.proba[rep.selection_mask].argmax(1)
        wa, f1 = accuracy(y_sel, pred_sel), macro_f1(y_sel, pred_sel)
        tracker.log_metrics(_metrics(rep) | {"wa_selection": wa, "macro_f1_selection": f1})
        out = tmp / "artifacts"
        (out / "plots").mkdir(parents=True)
        (out / "ensemble.json").write_text(json.dumps(_describe(result), indent=2))
        _plot_trajectory(result, out / "plots" / "trajectory.png")
        cm = confusion_matrix(y_sel, pred_sel, len(result.classes))
        plot_confusion_matrix(
            cm, result.classes, out / "plots" / "confusion_matrix.png", title="ensemble, selection set"
        )
        save_oof(
            OOFScores(ref.utt_ids, ref.classes, ref.y, ref.fold, ref.split, ref.speaker, rep.proba.astype(np.float32)),
            out / "oof" / "scores.npz",
        )
        tracker.log_artifact(out / "ensemble.json")
        tracker.log_artifact(out / "plots", "plots")
        tracker.log_artifact(out / "oof", "oof")
        result.run_id = tracker.run_id
        if register and tracker.run_id:
            bundle = save_bundle(
                tmp / "bundle",
                [(r.run_id, r.name, _member_dir(client, r.run_id, tmp), w) for r, w in members],
                params["combiner"],
                {"ensemble_run_id": tracker.run_id, "metrics": _metrics(rep)},
            )
            log_pyfunc(tracker, bundle, tmp)
            nested = f"{rep.nested['ensemble_uar']:.4f}" if rep.nested else "n/a"
            result.version = register_model(
                client,
                tracker.run_id,
                register,
                alias,
                description=f"paraling ensemble of {len(members)} runs ({params['method']}, "
                f"{params['combiner']}); nested-CV UAR {nested}",
                tags={"paraling.kind": "ensemble", MEMBERS_TAG: tags[MEMBERS_TAG]},
            )
            version_ref = f"@{alias}" if alias else f"/{result.version}"
            result.model_uri = f"models:/{register}{version_ref}"
            log.info("registered %s version %s at %s", register, result.version, mask_secrets(str(client.tracking_uri)))


def _member_dir(client: Any, run_id: str, tmp: Path) -> Path:
    dst = tmp / "members" / run_id
    dst.mkdir(parents=True, exist_ok=True)
    return Path(client.download_artifacts(run_id, "model", str(dst)))


def format_summary(result: EnsembleResult) -> str:
    """A one-screen summary: members and weights, selection-set vs nested-CV UAR vs the best single run."""
    rep = result.report
    lines = [f"ensemble of {len(result.members)} run(s) from {len(result.runs)} candidate(s):"]
    for r, w in result.members:
        i = result.runs.index(r)
        lines.append(f"  x{w}  {r.label}  single UAR {rep.selector.single_scores_[i]:.3f}")
    best = result.runs[rep.best_single]
    lines.append(
        f"selection-set UAR: ensemble {rep.selection_uar:.3f}  |  best single run "
        f"{rep.best_single_uar:.3f} ({best.label})   (optimistic: selected on these utterances)"
    )
    if rep.selection_uar < rep.best_single_uar:
        lines.append(
            "  note: below the best single run on the selection set; only plain greedy selection "
            "(no bagging) guarantees >="
        )
    if rep.nested:
        lines.append(
            f"nested-CV UAR:     ensemble {rep.nested['ensemble_uar']:.3f}  |  best single run "
            f"{rep.nested['single_uar']:.3f}   (honest: selected without the scored fold)"
        )
        lines.append(
            "  per fold (ensemble / best single): "
            + ", ".join(
                f"{f}: {e:.3f}/{s:.3f}"
                for f, e, s in zip(
                    rep.nested["folds"], rep.nested["ensemble_fold_uar"], rep.nested["single_fold_uar"], strict=True
                )
            )
        )
    if rep.test_uar is not None:
        lines.append(
            f"test split UAR:    ensemble {rep.test_uar:.3f}  |  best single run {rep.best_single_test_uar:.3f}"
        )
    for r in result.skipped:
        lines.append(f"skipped (cannot predict from audio): {r.label}: {r.why_not}")
    if result.run_id:
        lines.append(f"MLflow run: {result.run_id}")
    if result.model_uri:
        lines.append(
            f"registered: {result.model_uri} (version {result.version}); "
            f"paraling predict --model {result.model_uri} FILE..."
        )
    return "\n".join(lines)
