"""Reading tracked runs back from MLflow: which runs qualify for an ensemble, their scores and their models.

A *candidate* run is FINISHED, has ``oof/scores.npz`` (see :mod:`paraling.scoring.oof`) and is neither an ensemble
(tag ``paraling.kind=ensemble``) nor a pre-training or sweep-parent run (``paraling.role=pretrain|sweep``);
pruned or failed trials are never candidates either. A candidate is *predictable* from audio when its
``model/`` artifacts hold a CNN ``spec.json`` and, per fold, weights and the fitted vote
(``fold<k>.safetensors`` + ``fold<k>.json``); baselines on utterance functionals (tag
``paraling.model_type``) and runs logged before paraling saved the fitted vote are not
(:attr:`TrackedRun.why_not` says why).

With ``study``, only runs that belong to that study count: runs tagged ``paraling.sweep.study`` (what
``paraling sweep`` sets on its parent and trial runs), ``paraling.study`` or ``optuna.study`` with that name,
and children (``mlflow.parentRunId``) of a run so tagged (the study's parent run).

Runs are also picked by *name*: the tag ``paraling.name`` (the ``name`` of the config, e.g. ``net0`` ... ``net5``
for Table 1; the run name when the tag is missing). :func:`newest_by_name` keeps the newest candidate per name, the
rule ``paraling report`` and ``paraling ensemble --names`` share; :func:`find_ensemble_run` finds a logged ensemble
of given member runs (what ``paraling ensemble`` tags and logs as its members, weights and combiner).

Everything goes through an explicit :class:`mlflow.tracking.MlflowClient`; no global MLflow state is
touched.
"""

from __future__ import annotations

import json
import logging
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from paraling.errors import EnsembleError, ModelError, TrackingError
from paraling.scoring.oof import OOFScores, load_oof
from paraling.secrets import mask_secrets
from paraling.tracking.model_dir import SPEC_FILE, missing_files, read_spec

__all__ = [
    "ENCODER_TAG",
    "MEMBERS_TAG",
    "NAME_TAG",
    "NEGATIVE_CLASS_TAG",
    "RUN_ID",
    "STUDY_TAGS",
    "TrackedRun",
    "artifact_files",
    "find_ensemble_run",
    "find_runs",
    "load_scores",
    "make_client",
    "newest_by_name",
]

log = logging.getLogger(__name__)

#: Tags that name the study a run (or its parent run) belongs to.
STUDY_TAGS: tuple[str, ...] = ("paraling.sweep.study", "paraling.study", "optuna.study")
#: Tag holding a run's config name (``net0`` ... ``net5`` in Table 1).
NAME_TAG = "paraling.name"
#: Tag of an ensemble run (``paraling.kind=ensemble``) listing its members' run ids, comma-separated.
MEMBERS_TAG = "paraling.members"
#: Tag of a run whose corpus names a negative class (``corpus.negative_class``): that class.
NEGATIVE_CLASS_TAG = "paraling.negative_class"
#: The pre-trained encoder a ``features=ssl`` run read: ``hub:<id>@<commit>``, ``folder:<digest>``, ``resemblyzer:...``
ENCODER_TAG = "paraling.encoder"
_PARENT = "mlflow.parentRunId"
# pre-training runs (another task, for transfer) and sweep parents are never ensemble members
_NOT_MEMBERS = ("pretrain", "sweep")
RUN_ID = re.compile(r"^[0-9a-f]{32}$")
"""An MLflow run id."""


@dataclass
class TrackedRun:
    """One candidate run.

    Attributes:
        run_id: MLflow run id.
        name: Run name (or ``paraling.name`` tag).
        tags: All tags.
        metrics: Latest metric values.
        kind: ``cnn`` or what the run's tags say (``paraling.model_type`` / ``paraling.model``), for messages.
        predictable: Whether :mod:`paraling.serving.predict` can score audio with it.
        why_not: Why it is not predictable (empty when it is).
        start_time: Start time in ms (runs are listed oldest first).
        experiment_id: The run's MLflow experiment.
    """

    run_id: str
    name: str
    tags: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    kind: str = "cnn"
    predictable: bool = False
    why_not: str = ""
    start_time: int = 0
    experiment_id: str = ""

    @property
    def label(self) -> str:
        """``name (run id)`` for messages and plots."""
        return f"{self.name} ({self.run_id[:8]})"

    @property
    def config_name(self) -> str:
        """The ``paraling.name`` tag (the config's ``name``), else the run name."""
        return self.tags.get(NAME_TAG, self.name)


def make_client(uri: str | None = None) -> Any:
    """An :class:`~mlflow.tracking.MlflowClient` on ``uri`` (default as in :mod:`paraling.tracking.tracker`)."""
    from paraling.tracking.store import mlflow_client

    return mlflow_client(uri, registry=True)


def artifact_files(client: Any, run_id: str, path: str) -> set[str]:
    try:
        return {f.path for f in client.list_artifacts(run_id, path)}
    except Exception as exc:  # MlflowException, OSError from the artifact store
        log.warning("cannot list artifacts %s of run %s: %s", path, run_id, exc)
        return set()


def _model_status(client: Any, run_id: str) -> str:
    """Empty string when the run's ``model/`` can be scored from audio, else the reason."""
    files = {f.removeprefix("model/") for f in artifact_files(client, run_id, "model")}
    if SPEC_FILE not in files:
        return f"no model/{SPEC_FILE} (not a CNN run, e.g. a baseline on utterance features)"
    with tempfile.TemporaryDirectory() as tmp:
        try:
            spec = read_spec(client.download_artifacts(run_id, f"model/{SPEC_FILE}", tmp))
        except ModelError as exc:
            return str(exc)
    missing = missing_files(spec, files)
    return f"model/{missing}" if missing.startswith("fold") else missing


def _as_tracked(client: Any, run: Any, check_model: bool) -> TrackedRun | None:
    info, data = run.info, run.data
    tags = dict(data.tags)
    if tags.get("paraling.kind") == "ensemble" or tags.get("paraling.role") in _NOT_MEMBERS:
        return None
    if "oof/scores.npz" not in artifact_files(client, info.run_id, "oof"):
        return None
    kind = tags.get("paraling.model_type") or tags.get("paraling.model") or "cnn"
    tr = TrackedRun(
        info.run_id,
        info.run_name or tags.get(NAME_TAG, info.run_id),
        tags,
        dict(data.metrics),
        kind,
        start_time=int(info.start_time or 0),
        experiment_id=str(info.experiment_id),
    )
    if check_model:
        tr.why_not = _model_status(client, info.run_id)
        tr.predictable = not tr.why_not
    return tr


def _search(client: Any, experiment_id: str, filter_string: str) -> list[Any]:
    out, token = [], None
    while True:
        page = client.search_runs([experiment_id], filter_string, max_results=1000, page_token=token)
        out.extend(page)
        token = page.token
        if not token:
            return out


def find_runs(
    experiment: str | None = None,
    *,
    study: str | None = None,
    run_ids: Sequence[str] = (),
    names: Sequence[str] = (),
    uri: str | None = None,
    check_model: bool = True,
    client: Any = None,
) -> list[TrackedRun]:
    """Candidate runs of an experiment (optionally of one study), or the given runs, oldest first.

    Args:
        experiment: MLflow experiment name; required unless ``run_ids`` is given.
        study: Keep only runs of this study (see module docstring).
        run_ids: Use exactly these runs instead of searching; each must be FINISHED and have out-of-fold
            scores.
        names: Only the newest candidate of each of these names (:func:`newest_by_name`), in this order;
            every name must have one. Not with ``study`` or ``run_ids``.
        uri: Tracking URI.
        check_model: Also find out whether each run is predictable from audio.
        client: An existing client (else one is made for ``uri``).

    Raises:
        EnsembleError: Unknown experiment, no candidate runs, a given run that does not qualify (named), or a
            name without a finished run (named).
    """
    if names and (study is not None or run_ids):
        raise EnsembleError("pick runs one way: by names (--names), by study (--study) or by run ids (--runs)")
    client = client or make_client(uri)
    try:
        if run_ids:
            return _given_runs(client, run_ids, check_model)
        if not experiment:
            raise EnsembleError("pass --experiment NAME (an MLflow experiment) or explicit run ids")
        exp = client.get_experiment_by_name(experiment)
        if exp is None:
            known = sorted(e.name for e in client.search_experiments())
            raise EnsembleError(
                f"no MLflow experiment {experiment!r} at "
                f"{mask_secrets(client.tracking_uri)}; experiments there: {known}"
            )
        runs = _search(client, exp.experiment_id, "attributes.status = 'FINISHED'")
    except EnsembleError:
        raise
    except Exception as exc:  # MlflowException, sqlalchemy / HTTP errors
        raise TrackingError(f"cannot read runs from {mask_secrets(str(client.tracking_uri))}: {exc}") from exc
    if study is not None:
        parents = {r.info.run_id for r in runs if any(r.data.tags.get(t) == study for t in STUDY_TAGS)}
        if not parents:
            parents = {
                r.info.run_id
                for r in _search(client, exp.experiment_id, "")
                if any(r.data.tags.get(t) == study for t in STUDY_TAGS)
            }
        runs = [r for r in runs if r.info.run_id in parents or r.data.tags.get(_PARENT) in parents]
    found = sorted(
        (t for r in runs if (t := _as_tracked(client, r, check_model)) is not None),
        key=lambda t: (t.start_time, t.run_id),
    )
    if names:
        return _named(found, names, experiment)
    if not found:
        where = f"experiment {experiment!r}" + (f", study {study!r}" if study else "")
        raise EnsembleError(
            f"no finished runs with out-of-fold scores (oof/scores.npz) in {where}; "
            "train some first (paraling train ...)"
        )
    return found


def newest_by_name(runs: Sequence[TrackedRun]) -> dict[str, TrackedRun]:
    """The newest run of each :attr:`TrackedRun.config_name` among ``runs``.

    ``runs`` are listed oldest first, as :func:`find_runs` returns them: later runs of a name replace earlier ones.

    Example:
        >>> old, new = TrackedRun("a" * 32, "net2", start_time=1), TrackedRun("b" * 32, "net2", start_time=2)
        >>> newest_by_name([old, new])["net2"].run_id == "b" * 32
        True
    """
    return {r.config_name: r for r in runs}


def _named(found: Sequence[TrackedRun], names: Sequence[str], experiment: str | None) -> list[TrackedRun]:
    latest = newest_by_name(found)
    wanted = list(dict.fromkeys(names))
    missing = [n for n in wanted if n not in latest]
    if missing:
        them = "it" if len(missing) == 1 else "them"
        raise EnsembleError(
            f"no finished run named {', '.join(missing)} with out-of-fold scores in experiment {experiment!r} "
            f"(newest FINISHED run per tag {NAME_TAG}; names there: {', '.join(sorted(latest)) or 'none'}). "
            f"Fix: train {them} first (paraling train experiment=<config> or name=<name> "
            f"tracking.experiment={experiment}) or leave {them} out of --names"
        )
    return [latest[n] for n in wanted]


def find_ensemble_run(
    experiment: str, member_ids: Sequence[str], combiner: str, *, uri: str | None = None, client: Any = None
) -> TrackedRun | None:
    """The newest logged ensemble of exactly ``member_ids``, equally weighted and combined by ``combiner``.

    An ensemble run (what ``paraling ensemble`` logs: tag ``paraling.kind=ensemble``) qualifies when it is
    FINISHED, has ``oof/scores.npz``, its tag :data:`MEMBERS_TAG` holds the same run ids (in any order, each
    once), its param ``weights`` gives every member the same weight and its param ``combiner`` is ``combiner``:
    its out-of-fold probabilities are then the plain ``combiner`` mean of those runs'.

    Args:
        experiment: MLflow experiment name.
        member_ids: Run ids of the members.
        combiner: A :data:`paraling.ensemble.COMBINERS` name.
        uri: Tracking URI.
        client: An existing client (else one is made for ``uri``).

    Returns:
        The run (``kind`` ``ensemble``), or ``None`` when there is none (or no such experiment).

    Raises:
        TrackingError: The store cannot be read.
    """
    client = client or make_client(uri)
    want = sorted(member_ids)
    try:
        exp = client.get_experiment_by_name(experiment)
        if exp is None or not want:
            return None
        runs = _search(
            client, exp.experiment_id, "attributes.status = 'FINISHED' and tags.`paraling.kind` = 'ensemble'"
        )
    except Exception as exc:  # MlflowException, sqlalchemy / HTTP errors
        raise TrackingError(f"cannot read runs from {mask_secrets(str(client.tracking_uri))}: {exc}") from exc
    for run in sorted(runs, key=lambda r: (r.info.start_time or 0, r.info.run_id), reverse=True):
        tags, params = run.data.tags, run.data.params
        if sorted(tags.get(MEMBERS_TAG, "").split(",")) != want or params.get("combiner") != combiner:
            continue
        try:
            weights = json.loads(params.get("weights", "[]"))
        except ValueError:
            continue
        if not isinstance(weights, list) or len(weights) != len(want) or len(set(weights)) != 1:
            continue
        if "oof/scores.npz" not in artifact_files(client, run.info.run_id, "oof"):
            continue
        return TrackedRun(
            run.info.run_id,
            run.info.run_name or tags.get(NAME_TAG, run.info.run_id),
            dict(tags),
            dict(run.data.metrics),
            "ensemble",
            start_time=int(run.info.start_time or 0),
            experiment_id=str(run.info.experiment_id),
        )
    return None


def _given_runs(client: Any, run_ids: Sequence[str], check_model: bool) -> list[TrackedRun]:
    out = []
    for rid in dict.fromkeys(run_ids):
        run = client.get_run(rid)
        if run.info.status != "FINISHED":
            raise EnsembleError(f"run {rid} is {run.info.status}, not FINISHED; only finished runs can be combined")
        tr = _as_tracked(client, run, check_model)
        if tr is None:
            raise EnsembleError(f"run {rid} has no out-of-fold scores (oof/scores.npz) or is itself an ensemble")
        out.append(tr)
    return out


def load_scores(
    runs: Sequence[TrackedRun], dst: str | Path, uri: str | None = None, client: Any = None
) -> list[OOFScores]:
    """Download and read each run's ``oof/scores.npz`` (``allow_pickle=False``) into ``dst``."""
    client = client or make_client(uri)
    out = []
    for r in runs:
        folder = Path(dst) / r.run_id
        folder.mkdir(parents=True, exist_ok=True)
        try:
            path = client.download_artifacts(r.run_id, "oof/scores.npz", str(folder))
            out.append(load_oof(path))
        except EnsembleError as exc:
            raise EnsembleError(f"run {r.label}: {exc}") from exc
        except Exception as exc:  # artifact store errors, corrupt npz
            raise EnsembleError(f"run {r.label}: cannot read oof/scores.npz ({exc})") from exc
    return out
