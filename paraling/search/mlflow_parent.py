"""MLflow side of a sweep: one parent run per study, one nested child run per trial, states kept in step.

The parent run is created once (under the study lock) and its id is kept in the study's user attribute
``mlflow_parent_run_id``, so a resumed study (or another machine joining it) logs under the same parent. Child runs
are the ``run_experiment`` runs of the trials (tags ``paraling.sweep.study``/``paraling.sweep.trial``); after each trial
the child is renamed ``<study>-<number>`` and its ``paraling.state`` tag and status are aligned with Optuna's state
(COMPLETE → FINISHED, PRUNED → KILLED, FAIL → FAILED or KILLED for Ctrl-C). A trial that failed before its run
existed (bad combination at composition) still gets a FAILED child run, and children left RUNNING by a killed worker
are ended FAILED as soon as its trial is found stale.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from paraling.errors import TrackingError
from paraling.search.spec import StudySpec
from paraling.search.study_ensemble import ENSEMBLE_RUN_TAG, ENSEMBLE_UAR_TAG

__all__ = ["SweepTracking"]

log = logging.getLogger("paraling.search")

PARENT_ATTR = "mlflow_parent_run_id"
_EXPECTED = {"COMPLETE": ("FINISHED",), "PRUNED": ("KILLED",), "FAIL": ("FAILED", "KILLED")}


class SweepTracking:
    """Parent/child bookkeeping against one MLflow tracking store.

    Args:
        uri: Resolved tracking URI (the one the trials log to).
        experiment: MLflow experiment name (the trials' ``tracking.experiment``).
        study_name: Study name (child run names and tags).
    """

    def __init__(self, uri: str, experiment: str, study_name: str) -> None:
        from paraling.tracking.store import mlflow_client

        self.uri, self.experiment, self.study_name = uri, experiment, study_name
        self.client = mlflow_client(uri)
        self._experiment_id: str | None = None

    @property
    def experiment_id(self) -> str:
        """Id of the experiment (created with the parent run)."""
        if self._experiment_id is None:
            exp = self.client.get_experiment_by_name(self.experiment)
            if exp is None:  # the parent run creates it; a missing one means another tracking store
                raise TrackingError(f"MLflow experiment {self.experiment!r} does not exist at {self.uri}")
            self._experiment_id = str(exp.experiment_id)
        return self._experiment_id

    def open_parent(self, study: Any, spec: StudySpec, storage: str, command: str) -> str:
        """Find the study's parent run (re-opened as RUNNING) or create it; call under the study lock.

        Raises:
            TrackingError: The tracking store cannot be reached.
        """
        from paraling.search.storage import describe_storage
        from paraling.tracking.tracker import RunTracker

        run_id = study.user_attrs.get(PARENT_ATTR)
        if run_id:
            try:
                run = self.client.get_run(run_id)
                if run.info.lifecycle_stage != "active":
                    raise TrackingError(f"run {run_id} is deleted")
            except Exception as exc:  # run deleted or a different tracking store
                log.warning(
                    "parent run %s of study %s not found in %s (%s); creating a new one",
                    run_id,
                    spec.study_name,
                    self.uri,
                    exc,
                )
            else:
                from mlflow.entities import RunTag

                from paraling.tracking.run_tags import owner_tags as _owner_tags

                # this process owns the run now (so paraling's reaper of dead owners leaves it alone), then RUNNING
                self.client.log_batch(run_id, tags=[RunTag(k, v) for k, v in _owner_tags().items()])
                self.client.update_run(run_id, status="RUNNING")
                self._experiment_id = str(run.info.experiment_id)
                log.info("resuming under MLflow parent run %s", run_id)
                return str(run_id)
        tags = {
            "paraling.role": "sweep",
            "paraling.sweep.study": spec.study_name,
            "paraling.sweep.storage": describe_storage(storage),
            "paraling.sweep.sampler": spec.sampler_description(),
            "paraling.sweep.pruner": spec.pruner_description(),
            "paraling.sweep.space": spec.space.to_json(),
            "paraling.sweep.metric": spec.metric,
            "paraling.sweep.direction": spec.direction,
            "paraling.reproduce": describe_storage(command),
        }
        if spec.path is not None:
            tags["paraling.sweep.file"] = str(spec.path)
        tracker = RunTracker(self.experiment, self.uri, f"sweep-{spec.study_name}", tags=tags)
        tracker.log_params(
            {
                "n_trials": spec.n_trials,
                "timeout": spec.timeout,
                "failure_budget": spec.max_failures,
                "metric": spec.metric,
                "direction": spec.direction,
                "prune_on": spec.prune_on,
                "sampler": spec.sampler_description(),
                "pruner": spec.pruner_description(),
                "overrides": json.dumps(list(spec.overrides)),
            }
        )
        if spec.path is not None and Path(spec.path).is_file():
            tracker.log_artifact(spec.path, "study")
        assert tracker.run_id is not None
        study.set_user_attr(PARENT_ATTR, tracker.run_id)
        log.info("MLflow parent run %s (experiment %s)", tracker.run_id, self.experiment)
        return tracker.run_id

    def _children(self, parent_run_id: str, extra: str = "") -> list[Any]:
        flt = f"tags.mlflow.parentRunId = '{parent_run_id}'" + (f" and {extra}" if extra else "")
        return list(self.client.search_runs([self.experiment_id], filter_string=flt, max_results=5000))

    def child_sync(self, parent_run_id: str | None) -> Callable[[Any], None] | None:
        """What a worker calls on each finished trial: :meth:`sync_child` under ``parent_run_id`` (``None``
        without a parent run)."""
        if not parent_run_id:
            return None
        parent = parent_run_id

        def sync(frozen: Any) -> None:
            self.sync_child(parent, frozen)

        return sync

    def sync_child(self, parent_run_id: str, frozen: Any) -> str:
        """Make the trial's child run match its finished Optuna state (creating a FAILED run if none exists).

        Returns:
            The child run id.
        """
        from paraling.tracking.tracker import RunTracker

        state = frozen.state.name
        runs = self._children(parent_run_id, f"tags.`paraling.sweep.trial` = '{frozen.number}'")
        reason = str(frozen.user_attrs.get("fail_reason", ""))
        name = f"{self.study_name}-{frozen.number:03d}"
        if not runs:
            tags = {
                "paraling.sweep.study": self.study_name,
                "paraling.sweep.trial": str(frozen.number),
                "paraling.reproduce": str(frozen.user_attrs.get("reproduce", "")),
            }
            tracker = RunTracker(self.experiment, self.uri, name, parent_run_id, tags)
            tracker.log_params(frozen.params)
            tracker._state(state, reason)
            tracker.end(_EXPECTED.get(state, ("FAILED",))[0])
            assert tracker.run_id is not None
            return tracker.run_id
        run = runs[0]
        run_id = run.info.run_id
        updates: dict[str, str] = {}
        if run.data.tags.get("paraling.state") != state:
            updates["paraling.state"] = state
        if state == "FAIL" and reason and not run.data.tags.get("paraling.error"):
            updates["paraling.error"] = reason[:4000]
        if frozen.value is not None:
            updates["paraling.sweep.value"] = f"{frozen.value:.6g}"
        if updates:
            from mlflow.entities import RunTag

            self.client.log_batch(run_id, tags=[RunTag(k, v) for k, v in updates.items()])
        if run.info.run_name != name:
            self.client.update_run(run_id, name=name)
        expected = _EXPECTED.get(state)
        if expected and run.info.status not in expected:
            self.client.set_terminated(run_id, status=expected[0])
        return str(run_id)

    def end_orphans(self, parent_run_id: str, study: Any) -> int:
        """Align every child run of a finished trial that its worker could not end (killed workers).

        A run left RUNNING, or already marked FAILED by another process's clean-up of dead owners but never
        named and tagged as its trial, is synced with the trial (state, name, status).

        Returns:
            How many runs were aligned.
        """
        from optuna.trial import TrialState

        trials = {t.number: t for t in study.get_trials(deepcopy=False)}
        n = 0
        for run in self._children(parent_run_id):
            num = run.data.tags.get("paraling.sweep.trial")
            t = trials.get(int(num)) if num is not None and num.isdigit() else None
            if t is None or t.state in (TrialState.RUNNING, TrialState.WAITING):
                continue
            synced = (
                run.info.run_name == f"{self.study_name}-{t.number:03d}"
                and run.data.tags.get("paraling.state") == t.state.name
                and run.info.status in _EXPECTED.get(t.state.name, (run.info.status,))
            )
            if synced:
                continue
            self.sync_child(parent_run_id, t)
            n += 1
            log.warning("ended orphaned MLflow run %s of trial %d as %s", run.info.run_id, t.number, t.state.name)
        return n

    def missing_children(self, parent_run_id: str, study: Any) -> int:
        """Create FAILED child runs for finished trials that have none (died before their run was created)."""
        from optuna.trial import TrialState

        have = {r.data.tags.get("paraling.sweep.trial") for r in self._children(parent_run_id)}
        n = 0
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)):
            if str(t.number) not in have:
                self.sync_child(parent_run_id, t)
                n += 1
        return n

    def abandon(self, parent_run_id: str, reason: str) -> None:
        """End the parent run FAILED with ``reason`` when the study itself cannot be read (its storage is down):
        no run of the sweep stays RUNNING. A re-run of the command resumes the parent."""
        from paraling.secrets import mask_secrets

        reason = mask_secrets(reason)[:4000]
        try:
            self.client.set_tag(parent_run_id, "paraling.sweep.stopped", "error")
            self.client.set_tag(parent_run_id, "paraling.error", reason)
            self.client.set_terminated(parent_run_id, status="FAILED")
        except Exception as exc:  # the tracking server may be what is down
            log.error("could not end the MLflow parent run %s: %s", parent_run_id, mask_secrets(str(exc)))

    def finalize(self, parent_run_id: str, study: Any, summary: Any, status: str | None) -> None:
        """Log best value, best trial's ``paraling train`` line, counts and plots on the parent; end it.

        Args:
            parent_run_id: The parent run.
            study: The study.
            summary: The :class:`~paraling.search.runner.SweepSummary`.
            status: ``FINISHED``/``FAILED``/``KILLED``, or ``None`` to leave it RUNNING (other workers still busy).
        """
        from mlflow.entities import Metric, RunTag

        from paraling.secrets import mask_secrets

        metrics = {
            "n_complete": summary.complete,
            "n_pruned": summary.pruned,
            "n_failed": summary.failed,
            "n_trials": summary.complete + summary.pruned + summary.failed,
        }
        tags = {
            "paraling.sweep.counts": json.dumps(
                {
                    "complete": summary.complete,
                    "pruned": summary.pruned,
                    "failed": summary.failed,
                    "retried": summary.retried,
                }
            )
        }
        if summary.best_number is not None:
            metrics["best_value"] = float(summary.best_value)
            tags.update(
                {
                    "paraling.sweep.best_trial": str(summary.best_number),
                    "paraling.sweep.best_reproduce": summary.best_reproduce,
                    "paraling.sweep.best_params": json.dumps(summary.best_params, default=str),
                }
            )
            best_run = study.best_trial.user_attrs.get("mlflow_run_id")
            link = ""
            if best_run:
                tags["paraling.sweep.best_run_id"] = str(best_run)
                link = f" ([its run](#/experiments/{self.experiment_id}/runs/{best_run}))"
            tags["mlflow.note.content"] = (  # the parent run page's description
                f"**Study `{summary.study_name}`: best {summary.metric} {float(summary.best_value):.4f}** "
                f"(trial {summary.best_number}{link})\n\n"
                f"- trials: {summary.complete} complete, {summary.pruned} pruned, {summary.failed} failed\n"
                f"- best parameters: {json.dumps(summary.best_params, default=str)}\n\n"
                f"Reproduce the best trial: `{summary.best_reproduce}`"
            )
            parent_tags = self.client.get_run(parent_run_id).data.tags
            ens = parent_tags.get(ENSEMBLE_RUN_TAG)
            if ens:
                tags["mlflow.note.content"] += (
                    f"\n\nEnsemble of the trials: nested-CV UAR {parent_tags.get(ENSEMBLE_UAR_TAG, '?')} "
                    f"([its run](#/experiments/{self.experiment_id}/runs/{ens}))"
                )
            if best_run:
                old = self.client.get_run(parent_run_id).data.tags.get("paraling.sweep.best_run_id")
                if old and old != best_run:
                    self.client.set_tag(old, "paraling.sweep.best", "false")
                self.client.set_tag(best_run, "paraling.sweep.best", "true")
        import time

        ts = int(time.time() * 1000)
        self.client.log_batch(
            parent_run_id,
            metrics=[Metric(k, float(v), ts, 0) for k, v in metrics.items()],
            tags=[RunTag(k, mask_secrets(v)[:5000]) for k, v in tags.items()],
        )
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / "plots"
            folder.mkdir()
            for f in _plots(study, folder):
                self.client.log_artifact(parent_run_id, str(f), "plots")
            try:
                df = study.trials_dataframe()
                df.to_csv(Path(tmp) / "trials.csv", index=False)
                self.client.log_artifact(parent_run_id, str(Path(tmp) / "trials.csv"))
            except Exception as exc:  # pandas missing or odd attrs; the plots matter more
                log.warning("could not write trials.csv: %s", exc)
        if status is not None:
            self.client.set_terminated(parent_run_id, status=status)


def _plots(study: Any, folder: Path) -> list[Path]:
    """Optimisation history, parameter importances and parallel coordinates (skipped when too few trials)."""
    import warnings

    import optuna
    from optuna.trial import TrialState
    from optuna.visualization import matplotlib as ovm

    from paraling.tracking.plots import save_figure  # switches pyplot to the Agg backend

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    jobs: list[tuple[str, Any, int]] = [
        ("optimization_history", ovm.plot_optimization_history, 1),
        ("param_importances", ovm.plot_param_importances, 2),
        ("parallel_coordinate", ovm.plot_parallel_coordinate, 1),
        ("intermediate_values", ovm.plot_intermediate_values, 1),
    ]
    out = []
    for name, fn, need in jobs:
        if len(complete) < need:
            log.info("plot %s skipped: needs %d complete trial(s), have %d", name, need, len(complete))
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                optuna.logging.set_verbosity(optuna.logging.ERROR)
                ax = fn(study)
            fig = (ax.flat[0] if hasattr(ax, "flat") else ax).figure
            fig.set_size_inches(10, 6)
            fig.tight_layout()
            out.append(save_figure(fig, folder / f"{name}.png", dpi=100))
        except Exception as exc:  # e.g. importances of a parameter that never varied
            log.info("plot %s skipped: %s", name, exc)
    return out
