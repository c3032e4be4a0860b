"""MLflow tracking: run lifecycle, nesting, params, per-epoch metrics and artifacts.

The default store is ``sqlite:///mlruns/mlflow.db`` with artifacts under ``mlruns/artifacts``; ``$MLFLOW_TRACKING_URI``
or ``tracking.uri`` override it (any URI MLflow accepts, e.g. ``http://127.0.0.1:5000``). Runs are driven through
:class:`mlflow.tracking.MlflowClient` (no global "active run"), so nested sweep trials and parallel workers never
step on each other. A run that raises ends as FAILED (KILLED on Ctrl-C), never RUNNING.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from paraling.errors import TrackingError, TrackingStoreError
from paraling.secrets import MASK, is_secret_key, mask_secrets
from paraling.tracking.run_tags import EXPERIMENT_KIND_TAG, TRAINING_KIND, alive, environment_tags, owner_tags
from paraling.tracking.store import DEFAULT_TRACKING_URI, artifact_root, mlflow_client, resolve_tracking_uri

__all__ = [
    "DEFAULT_TRACKING_URI",
    "RunTracker",
    "environment_tags",
    "flatten",
    "mask_secrets",
    "owner_tags",
    "resolve_tracking_uri",
    "store_unreachable",
]

log = logging.getLogger(__name__)


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested mappings to dotted keys (lists become JSON strings)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, key + "."))
        elif isinstance(v, list | tuple):
            out[key] = json.dumps(list(v))
        else:
            out[key] = v
    return out


def _tag(key: str, value: str) -> Any:
    from mlflow.entities import RunTag

    return RunTag(key, mask_secrets(str(value))[:5000])


_UNREACHABLE = ("Max retries exceeded", "Connection refused", "Connection aborted", "Connection reset", "timed out")


def store_unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` says the tracking store could not be reached (after MLflow's own retries), as opposed to a
    request it refused: a connection refused, reset or timed out, or a database that is not answering."""
    import requests
    from sqlalchemy import exc as sa

    e: BaseException | None = exc
    for _ in range(6):
        if e is None:
            return False
        if isinstance(e, requests.ConnectionError | requests.Timeout | sa.OperationalError):
            return True
        if any(m in str(e) for m in _UNREACHABLE):
            return True
        e = e.__cause__ or e.__context__
    return False


class RunTracker:
    """One MLflow run (or a no-op stand-in when tracking is disabled).

    Args:
        experiment: MLflow experiment name (created on first use).
        uri: Tracking URI (see :func:`resolve_tracking_uri`).
        run_name: Display name.
        parent_run_id: Makes this a nested child run.
        tags: Extra tags.
        enabled: When false every method is a no-op and :attr:`run_id` is ``None``.
        run_id: Re-open an existing run instead of creating one (resume).
    """

    def __init__(
        self,
        experiment: str = "paraling",
        uri: str | None = None,
        run_name: str | None = None,
        parent_run_id: str | None = None,
        tags: Mapping[str, str] | None = None,
        enabled: bool = True,
        run_id: str | None = None,
    ) -> None:
        self.enabled = enabled
        self.resumed = False
        self.run_id: str | None = None
        self.experiment_id: str | None = None
        self.uri: str | None = None
        if not enabled:
            return
        from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME

        self.uri = resolve_tracking_uri(uri)
        try:
            self.client = mlflow_client(self.uri)
            self.experiment_id = self._experiment(experiment)
            self.reap_dead_runs()
            if run_id is not None and self._reopen(run_id):
                return
            all_tags = {**environment_tags(), **owner_tags(), **(tags or {})}
            if parent_run_id:
                all_tags[MLFLOW_PARENT_RUN_ID] = parent_run_id
            if run_name:
                all_tags[MLFLOW_RUN_NAME] = run_name
            run = self.client.create_run(
                self.experiment_id, run_name=run_name, tags={k: mask_secrets(str(v)) for k, v in all_tags.items()}
            )
        except Exception as exc:  # MlflowException, sqlalchemy, requests errors
            kind = TrackingStoreError if store_unreachable(exc) else TrackingError
            raise kind(f"cannot open an MLflow run at {mask_secrets(self.uri)}: {mask_secrets(str(exc))}") from None
        self.run_id = run.info.run_id

    @classmethod
    def from_config(
        cls,
        cfg: Any,
        parent_run_id: str | None = None,
        tags: Mapping[str, str] | None = None,
        run_id: str | None = None,
    ) -> RunTracker:
        """The tracker of a run configured by a composed config's ``tracking`` node.

        The run name defaults to ``<name>-seed<seed>`` (``net3-seed1``): rows of a table trained over several seeds
        stay apart in the MLflow UI; the tag ``paraling.name`` keeps the plain ``name``.
        """
        return cls(
            cfg.tracking.experiment,
            cfg.tracking.uri,
            cfg.tracking.run_name or f"{cfg.name}-seed{cfg.seed}",
            parent_run_id,
            tags,
            bool(cfg.tracking.enabled),
            run_id=run_id,
        )

    def _reopen(self, run_id: str) -> bool:
        """Mark an unfinished run RUNNING again under this process (resume); false if it is gone or finished."""
        try:
            run = self.client.get_run(run_id)
        except Exception:  # deleted or never existed
            return False
        if run.info.status == "FINISHED" or run.info.lifecycle_stage != "active":
            return False
        self.run_id, self.resumed = run_id, True
        self.client.update_run(run_id, status="RUNNING")
        self.client.log_batch(
            run_id, tags=[_tag(k, v) for k, v in {**owner_tags(), "paraling.resumed": "true"}.items()]
        )
        log.info("resuming MLflow run %s", run_id)
        return True

    def reap_dead_runs(self) -> int:
        """End as FAILED the RUNNING runs of this experiment whose owner process on this host has died.

        A process killed with SIGKILL cannot end its own run; the next paraling process on the same host does it, so
        no run stays RUNNING forever. Returns how many runs were reaped.
        """
        host = socket.gethostname()
        try:
            runs = self.client.search_runs(
                [self.experiment_id],
                filter_string=f"attributes.status = 'RUNNING' and tags.`paraling.host` = '{host}'",
                max_results=500,
            )
        except Exception as exc:  # never block a run on housekeeping
            log.debug("could not search for dead runs: %s", exc)
            return 0
        n = 0
        for run in runs:
            tags = run.data.tags
            if alive(tags.get("paraling.pid"), tags.get("paraling.pid_start")):
                continue
            reason = f"owner process {tags.get('paraling.pid')} on {host} died without ending the run (killed?)"
            self.client.log_batch(
                run.info.run_id, tags=[_tag("paraling.state", "FAIL"), _tag("paraling.error", reason)]
            )
            self.client.set_terminated(run.info.run_id, status="FAILED")
            log.warning("MLflow run %s: %s; marked FAILED", run.info.run_id, reason)
            n += 1
        return n

    def _experiment(self, name: str) -> str:
        """The id of experiment ``name`` (created if needed), marked as a training-runs experiment for the UI."""
        exp = self.client.get_experiment_by_name(name)
        if exp is None:
            with contextlib.suppress(Exception):  # created concurrently by another worker: found below
                self.client.create_experiment(name, artifact_location=artifact_root(self.uri or ""))
            exp = self.client.get_experiment_by_name(name)
            if exp is None:
                raise TrackingError(f"cannot create the MLflow experiment {name!r} at {mask_secrets(self.uri or '')}")
        if EXPERIMENT_KIND_TAG not in exp.tags:  # a kind the user chose stays
            self.client.set_experiment_tag(exp.experiment_id, EXPERIMENT_KIND_TAG, TRAINING_KIND)
        return exp.experiment_id

    @contextmanager
    def _store(self, what: str) -> Iterator[None]:
        """Turn a failure of the tracking store into one :class:`~paraling.errors.TrackingStoreError` line."""
        try:
            yield
        except TrackingError:
            raise
        except Exception as exc:  # MlflowException, requests and sqlalchemy errors: after MLflow's own retries
            detail = " ".join(mask_secrets(str(exc)).split())[:300]
            raise TrackingStoreError(
                f"the MLflow tracking store {mask_secrets(self.uri or '')} failed while {what} (run {self.run_id}): "
                f"{detail}. Fix: bring the tracking server back (or check its URL and disk), then re-run the same "
                "command: with trainer.checkpoint=true (the default) the training done so far is kept on disk and "
                "resumes into the same run"
            ) from None

    def log_dataset(
        self, name: str, digest: str, source: str, profile: Mapping[str, Any], context: str = "training"
    ) -> None:
        """Record the corpus as the run's MLflow dataset input (the runs table's Dataset column).

        Args:
            name: Dataset name (the corpus name).
            digest: Content digest (the manifest digest).
            source: Where it lives (path or URL; masked).
            profile: Sizes shown with the dataset (utterances, speakers, classes).
            context: MLflow's ``mlflow.data.context`` (``training`` or ``evaluation``).
        """
        if not self.enabled:
            return
        from mlflow.entities import Dataset, DatasetInput, InputTag

        ds = Dataset(
            name=mask_secrets(name),
            digest=digest[:36],
            source_type="local",
            source=json.dumps({"uri": mask_secrets(source)}),
            profile=json.dumps(dict(profile), default=str),
        )
        entry = DatasetInput(ds, tags=[InputTag("mlflow.data.context", context)])
        for attempt in range(3):
            try:
                self.client.log_inputs(self.run_id, datasets=[entry])
                return
            except Exception as exc:  # two runs recording the same new dataset at once collide on its unique key
                if attempt == 2:  # metadata only: the run goes on without its Dataset column entry
                    log.warning("run %s: could not record dataset %s: %s", self.run_id, name, mask_secrets(str(exc)))
                else:
                    time.sleep(0.2 * (attempt + 1))  # the other run's row exists now: linking to it succeeds

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log params (values masked for secrets, truncated to MLflow's 6000-character limit)."""
        if not self.enabled:
            return
        from mlflow.entities import Param

        items = []
        for k, v in params.items():
            text = MASK if is_secret_key(k) and v not in (None, "") else mask_secrets(str(v))
            items.append(Param(k, text[:6000]))
        with self._store("logging parameters"):
            if self.resumed:  # a resumed run keeps its params (MLflow refuses changed values): log new keys only
                logged = self.client.get_run(self.run_id).data.params
                changed = sorted(p.key for p in items if p.key in logged and logged[p.key] != p.value)
                if changed:
                    log.warning("resumed run %s keeps its logged values of %s", self.run_id, ", ".join(changed))
                items = [p for p in items if p.key not in logged]
            for s in range(0, len(items), 100):
                self.client.log_batch(self.run_id, params=items[s : s + 100])

    def log_metrics(self, metrics: Mapping[str, float], step: int = 0) -> None:
        """Log all ``metrics`` of one step in one batch call (non-finite values are skipped)."""
        if not self.enabled or not metrics:
            return
        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        items = [Metric(k, float(v), ts, step) for k, v in metrics.items() if v == v and abs(float(v)) != float("inf")]
        with self._store("logging metrics"):
            for s in range(0, len(items), 500):
                self.client.log_batch(self.run_id, metrics=items[s : s + 500])

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        """Set several tags (values masked for secrets)."""
        if not self.enabled:
            return
        with self._store("setting tags"):
            self.client.log_batch(self.run_id, tags=[_tag(k, v) for k, v in tags.items()])

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        """Upload a local file or folder into the run's artifacts, one file at a time.

        A folder is uploaded file by file rather than with ``MlflowClient.log_artifacts``: the local artifact
        store copies a folder in place, so a process killed mid-copy would leave a truncated file listed as an
        artifact, whereas single files are staged under a hidden name and renamed into place.
        """
        if not self.enabled:
            return
        p = Path(path)
        with self._store(f"uploading {p.name}"):
            if not p.is_dir():
                self.client.log_artifact(self.run_id, str(p), artifact_path)
                return
            for f in sorted(q for q in p.rglob("*") if q.is_file()):
                parts = [s for s in (artifact_path, f.parent.relative_to(p).as_posix()) if s and s != "."]
                self.client.log_artifact(self.run_id, str(f), "/".join(parts) or None)

    def log_text(self, text: str, artifact_file: str) -> None:
        """Store ``text`` as an artifact file (e.g. ``config.yaml``)."""
        if not self.enabled:
            return
        with tempfile.TemporaryDirectory() as tmp:
            f = Path(tmp) / Path(artifact_file).name
            f.write_text(mask_secrets(text), encoding="utf-8")
            parent = str(Path(artifact_file).parent)
            self.log_artifact(f, None if parent == "." else parent)

    def end(self, status: str = "FINISHED") -> None:
        """Terminate the run with ``FINISHED``, ``FAILED`` or ``KILLED``."""
        if not self.enabled or self.run_id is None:
            return
        try:
            self.client.set_terminated(self.run_id, status=status)
        except Exception as exc:  # the store may be gone; never mask the original error
            log.error("could not end MLflow run %s as %s: %s", self.run_id, status, mask_secrets(str(exc))[:300])

    @contextmanager
    def running(self) -> Iterator[RunTracker]:
        """Context that ends the run FINISHED, FAILED (with the reason as a tag) or KILLED (Ctrl-C, pruned).

        The tag ``paraling.state`` records COMPLETE, PRUNED or FAIL (Optuna's vocabulary).
        """
        from paraling.errors import Pruned

        try:
            yield self
        except KeyboardInterrupt:
            self._state("FAIL", "interrupted (Ctrl-C)")
            self.end("KILLED")
            raise
        except Pruned as exc:
            self._state("PRUNED", str(exc))
            self.end("KILLED")
            raise
        except TrackingStoreError:
            log.error(
                "MLflow run %s could not be ended: the store is not answering. A re-run of the same command resumes "
                "it; otherwise the next paraling process on this host marks it FAILED",
                self.run_id,
            )
            raise
        except BaseException as exc:
            self._state("FAIL", f"{type(exc).__name__}: {exc}")
            self.end("FAILED")
            raise
        else:
            self._state("COMPLETE")
            self.end("FINISHED")

    def _state(self, state: str, reason: str = "") -> None:
        if not self.enabled:
            return
        tags = {"paraling.state": state}
        if reason:
            tags["paraling.error"] = reason[:4000]
        try:
            self.set_tags(tags)
        except Exception as exc:  # the store may be unreachable; never mask the original error
            log.error("could not tag MLflow run %s: %s", self.run_id, exc)
