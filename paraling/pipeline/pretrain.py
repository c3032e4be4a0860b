"""Where a transferred model comes from: a tracked run, a registered model, or a pre-training run made on demand.

``transfer.source`` names the source model:

- an MLflow run id (or ``runs:/<id>``) of a ``paraling train`` run that logged ``model/`` (``tracking.log_model``);
- ``models:/<name>@<alias>`` or ``models:/<name>/<version>``: a registered model version, resolved to its run;
- ``pretrain``: the pre-training run described by ``transfer.pretrain_overrides`` (Hydra overrides such as
  ``[experiment=pretrain_langid]``). A FINISHED run tagged with the same pre-training config hash
  (``paraling.pretrain_hash``) is reused; otherwise it is trained first with
  :func:`paraling.pipeline.experiment.run_experiment` (an ordinary tracked run, tagged ``paraling.role=pretrain``), so
  a multirun over transfer experiments needs no manual step.

The pre-training config is composed from ``transfer.pretrain_overrides`` and then *inherits* the target's
``features``, ``windows``, ``model``, ``trainer``, ``seed``, ``device``, ``cache_dir`` and tracking store, so that
the transferred layers fit; overrides given there as dotted keys (``trainer.epochs=20``) are applied last and win.

The weights come from the source run's ``model/fold<k>.safetensors`` with ``k = transfer.source_fold`` (default: the
lowest fold the source logged); ``model/spec.json`` gives its layer names and feature settings.

The copying itself is :mod:`paraling.models.transfer`. Pre-training is run by the caller's runner (``run``, the
experiment runner), so that this module does not import it.

Example:
    >>> # paraling train transfer.source=<run id> 'transfer.layers=[conv1,conv2,conv3]' transfer.lr_start=0.01
    >>> frozen = apply_transfer(model, cfg.transfer, cfg, run=run_experiment)  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from paraling.errors import TransferError
from paraling.filelock import file_lock
from paraling.models.transfer import transfer_layers

__all__ = [
    "HASH_TAG",
    "ROLE_TAG",
    "SOURCE_TAG",
    "Runner",
    "TransferSource",
    "apply_transfer",
    "ensure_pretrained",
    "find_pretrained",
    "load_source",
    "load_transfer_source",
    "pretrain_config",
    "pretrain_hash",
    "resolve_source",
]

log = logging.getLogger(__name__)

SOURCE_TAG = "paraling.transfer.source_run_id"
"""Tag on a transfer run: the run id its layers came from."""
ROLE_TAG = "paraling.role"
"""Tag ``pretrain`` marks source-task runs (reports skip them)."""
HASH_TAG = "paraling.pretrain_hash"

_INHERITED = ("features", "windows", "model", "trainer")
_NOT_HASHED = ("tracking", "progress", "device", "cache_dir")
# how, not what, is trained
_NOT_HASHED_TRAINER = ("threads", "eval_batch_size", "eval_batch_size_gpu", "checkpoint", "capture")
#: ``run(cfg, overrides=..., tags=...)`` -> a result with ``run_id``: the experiment runner, passed in by the caller
Runner = Callable[..., Any]


def _client(uri: str | None) -> Any:
    from paraling.tracking.store import mlflow_client

    return mlflow_client(uri)


def _uri(cfg: Any) -> str:
    from paraling.tracking.tracker import resolve_tracking_uri

    return resolve_tracking_uri(OmegaConf.select(cfg, "tracking.uri", default=None))


# --- which run -----------------------------------------------------------------------------------------------


def resolve_source(cfg: DictConfig, run: Runner | None = None) -> str:
    """The MLflow run id that ``cfg.transfer.source`` refers to (pre-training first when needed).

    Args:
        cfg: The target run's composed configuration.
        run: The experiment runner, used to train the pre-training run when none exists yet.

    Returns:
        A run id whose artifacts hold ``model/spec.json`` and ``model/fold<k>.safetensors``.

    Raises:
        TransferError: Unknown run, registered model or alias; ``pretrain`` without overrides.
    """
    source = str(cfg.transfer.source or "").strip()
    if not source:
        raise TransferError("transfer.source is empty; pass a run id, models:/name@alias or pretrain")
    uri = _uri(cfg)
    if source == "pretrain":
        if run is None:
            raise TransferError("transfer.source=pretrain: the pre-training run must be resolved by the runner first")
        run_id = ensure_pretrained(cfg, run)
    elif source.startswith("models:/"):
        run_id = _registered_run(uri, source)
    else:
        run_id = source[len("runs:/") :].split("/")[0] if source.startswith("runs:/") else source
        try:
            _client(uri).get_run(run_id)
        except Exception as exc:  # MlflowException: RESOURCE_DOES_NOT_EXIST or a malformed id
            raise TransferError(
                f"transfer.source={source!r}: no MLflow run with that id in {uri} ({type(exc).__name__}); pass the "
                "run id of a finished `paraling train` run, models:/name@alias, or pretrain"
            ) from exc
    return run_id


def _registered_run(uri: str, source: str) -> str:
    ref = source[len("models:/") :]
    client = _client(uri)
    try:
        if "@" in ref:
            name, alias = ref.split("@", 1)
            mv = client.get_model_version_by_alias(name, alias)
        elif "/" in ref:
            name, version = ref.rsplit("/", 1)
            mv = client.get_model_version(name, version)
        else:
            raise TransferError(f"transfer.source={source!r}: use models:/<name>@<alias> or models:/<name>/<version>")
    except TransferError:
        raise
    except Exception as exc:
        raise TransferError(f"transfer.source={source!r}: registered model not found in {uri} ({exc})") from exc
    if not mv.run_id:
        raise TransferError(f"transfer.source={source!r}: model version {mv.version} is not linked to a run")
    return str(mv.run_id)


# --- pre-training --------------------------------------------------------------------------------------------


def _compose(overrides: Sequence[str]) -> DictConfig:
    from paraling.config import compose

    return compose(overrides)  # inside `paraling train` (also -m) it reuses the app's search path


def pretrain_config(cfg: DictConfig) -> DictConfig:
    """Compose the pre-training run's configuration for a target config with ``transfer.source=pretrain``.

    Raises:
        TransferError: ``transfer.pretrain_overrides`` is empty or does not compose.
    """
    overrides = [str(o) for o in cfg.transfer.pretrain_overrides]
    if not overrides:
        raise TransferError(
            "transfer.source=pretrain needs transfer.pretrain_overrides describing the source task, e.g. "
            "'transfer.pretrain_overrides=[\"experiment=pretrain_langid\"]' (or use transfer=naive / transfer=conv)"
        )
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from paraling.config import TransferConfig

    try:
        base = _compose(overrides)
        parsed = OverridesParser.create().parse_overrides(overrides)
    except Exception as exc:  # hydra.errors.*: bad group, bad key, bad value
        raise TransferError(f"transfer.pretrain_overrides={overrides} do not compose: {exc}") from exc
    inherited: dict[str, Any] = {k: OmegaConf.to_container(cfg[k], resolve=True) for k in _INHERITED}
    inherited.update({k: cfg[k] for k in ("seed", "device", "cache_dir", "progress")})
    # the source model must be a tracked run with its weights logged
    inherited["tracking"] = {"uri": cfg.tracking.uri, "enabled": True, "log_model": True}
    inherited["transfer"] = OmegaConf.to_container(OmegaConf.structured(TransferConfig))
    merged = OmegaConf.merge(base, inherited)
    assert isinstance(merged, DictConfig)
    for o in parsed:
        key = o.key_or_group
        if "." in key and o.type.name == "CHANGE" and not o.is_add():
            OmegaConf.update(merged, key, o.value(), merge=False)
    return merged


@contextlib.contextmanager
def _open(cfg: DictConfig) -> Iterator[None]:
    """Temporarily allow writing into a (possibly read-only) composed config."""
    ro = OmegaConf.is_readonly(cfg)
    OmegaConf.set_readonly(cfg, False)
    try:
        yield
    finally:
        OmegaConf.set_readonly(cfg, ro)


def pretrain_hash(pretrain_cfg: DictConfig) -> str:
    """Hash of a pre-training config, 20 hex chars.

    Settings that do not change what is trained are left out: tracking, progress, device, cache folder and the
    trainer's ``threads``, ``eval_batch_size``, ``eval_batch_size_gpu``, ``checkpoint`` and ``capture``.
    """
    d = OmegaConf.to_container(pretrain_cfg, resolve=True)
    assert isinstance(d, dict)
    for k in _NOT_HASHED:
        d.pop(k, None)
    for k in _NOT_HASHED_TRAINER:
        d.get("trainer", {}).pop(k, None)
    return hashlib.blake2b(json.dumps(d, sort_keys=True, default=str).encode(), digest_size=10).hexdigest()


def find_pretrained(digest: str, uri: str | None = None) -> str | None:
    """Run id of the newest FINISHED run tagged ``paraling.pretrain_hash=digest`` in any experiment, or ``None``."""
    client = _client(uri)
    from mlflow.entities import ViewType

    ids = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ACTIVE_ONLY)]
    if not ids:
        return None
    runs = client.search_runs(
        ids,
        filter_string=f"tags.`{HASH_TAG}` = '{digest}' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return runs[0].info.run_id if runs else None


def _ensure_corpus(pcfg: DictConfig) -> None:
    """Generate the embedded language-ID corpus when the pre-training config points at a missing one."""
    c = pcfg.corpus
    if c.name != "langid" or c.kind != "csv" or not c.path or Path(c.path).exists():
        return
    from paraling.data.recipes.langid import prepare_langid

    log.info("transfer: generating the language-ID source corpus into %s", Path(c.path).parent)
    made = Path(prepare_langid(Path(c.path).parent))
    if made.resolve() != Path(c.path).resolve():
        with _open(pcfg):
            c.path = str(made)


def ensure_pretrained(cfg: DictConfig, run: Runner) -> str:
    """Find the finished pre-training run for ``cfg``'s source config, or train and track it now with ``run``.

    Returns:
        The pre-training run id.
    """
    pcfg = pretrain_config(cfg)
    digest = pretrain_hash(pcfg)
    uri = _uri(pcfg)
    found = find_pretrained(digest, uri)
    if found:
        log.info("transfer: reusing pre-training run %s (config hash %s)", found, digest)
        return found
    with file_lock(Path(str(cfg.cache_dir)) / "locks" / f"pretrain-{digest}.lock"):
        found = find_pretrained(digest, uri)  # another worker may have finished it while we waited
        if found:
            return found
        log.info("transfer: no finished pre-training run with config hash %s; training it now", digest)
        _ensure_corpus(pcfg)
        result = run(
            pcfg,
            overrides=[str(o) for o in cfg.transfer.pretrain_overrides],
            tags={ROLE_TAG: "pretrain", HASH_TAG: digest},
        )
    if result.run_id is None:  # pragma: no cover - tracking is forced on above
        raise TransferError("the pre-training run was not tracked; enable tracking")
    return result.run_id


# --- weights -------------------------------------------------------------------------------------------------


def load_source(
    run_id: str, fold: int | None = None, uri: str | None = None
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Download the model spec and one fold's weights from a run (:mod:`paraling.tracking.model_dir`).

    Args:
        run_id: Source run.
        fold: Fold whose model to use; ``None`` = the lowest fold the run logged.
        uri: Tracking URI (``None`` = ``$MLFLOW_TRACKING_URI`` or the default store).

    Returns:
        ``(spec, state_dict)``; ``spec`` is the :class:`~paraling.tracking.model_dir.ModelSpec` as a dict, with the
        chosen ``fold``.

    Raises:
        TransferError: The run has no logged model, an unreadable one, or not that fold.
    """
    from safetensors.torch import load_file

    from paraling.errors import ModelError
    from paraling.tracking.model_dir import SPEC_FILE, read_spec, weights_name

    client = _client(uri)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            spec_file = client.download_artifacts(run_id, f"model/{SPEC_FILE}", tmp)
        except Exception as exc:
            raise TransferError(
                f"run {run_id} has no model/{SPEC_FILE} artifact ({type(exc).__name__}); the source must be a "
                "`paraling train` run with tracking.log_model=true"
            ) from exc
        try:
            spec = read_spec(spec_file)
        except ModelError as exc:
            raise TransferError(f"run {run_id}: {exc}") from None
        k = min(spec.folds) if fold is None and spec.folds else fold
        if k is None or k not in spec.folds:
            raise TransferError(f"run {run_id} logged models for folds {spec.folds}, but transfer.source_fold={fold}")
        try:
            state = load_file(client.download_artifacts(run_id, f"model/{weights_name(k)}", tmp))
        except Exception as exc:
            raise TransferError(f"run {run_id}: cannot read model/{weights_name(k)} ({exc})") from exc
    return {**spec.to_dict(), "fold": k}, state


@dataclass(frozen=True)
class TransferSource:
    """The source model of a transfer, loaded once per run.

    Attributes:
        run_id: The source run.
        spec: Its model spec (with the chosen ``fold``).
        state: That fold's weights.
    """

    run_id: str
    spec: dict[str, Any]
    state: dict[str, torch.Tensor]


def load_transfer_source(cfg: DictConfig, run: Runner | None = None) -> TransferSource:
    """Resolve ``cfg.transfer.source`` (pre-training first when needed) and load its ``transfer.source_fold``.

    Raises:
        TransferError: See :func:`resolve_source` and :func:`load_source`.
    """
    run_id = resolve_source(cfg, run)
    fold = OmegaConf.select(cfg, "transfer.source_fold", default=None)
    spec, state = load_source(run_id, None if fold is None else int(fold), _uri(cfg))
    return TransferSource(run_id, spec, state)


def apply_transfer(model: torch.nn.Module, cfg: DictConfig, source: TransferSource) -> list[str]:
    """Copy the layers ``cfg.transfer.layers`` selects from ``source`` into ``model`` (built fresh, He-initialised).

    Args:
        model: A :class:`~paraling.models.cnn.WindowCNN` for the target task.
        cfg: The whole target config.
        source: What :func:`load_transfer_source` loaded.

    Returns:
        The names of the copied layers.

    Raises:
        TransferError: See :func:`paraling.models.transfer.transfer_layers`.
    """
    features = OmegaConf.to_container(cfg.features, resolve=True)
    spec = {**source.spec, "run_id": source.run_id}
    return transfer_layers(model, spec, source.state, cfg.transfer.layers, features)  # type: ignore[arg-type]
