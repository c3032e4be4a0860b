"""Old config key names keep working, with one deprecation line each.

The selector of every plug-in group is ``kind`` now: ``model.name``, ``aggregation.method`` and ``augment.name`` were
renamed. An override that sets an old selector (``model.name=svm``) selects the group's option instead
(``model=svm``: the option carries that kind's own keys); a YAML node that still says ``name:`` / ``method:`` has it
read as ``kind``. Configurations logged by earlier releases hold every key of the old one-size-fits-all nodes
(``corpus.demo_seed`` beside ``corpus.file_column``); such a full dump is recognised and the keys that are not the
kind's own are dropped, so old runs' configs still load (LR on a CNN run's embeddings, transfer from an old run).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

__all__ = ["RENAMED", "legacy_node", "rewrite_override", "rewrite_overrides"]

log = logging.getLogger("paraling")

#: old key -> (group whose option it selects, new key)
RENAMED: dict[str, tuple[str, str]] = {
    "model.name": ("model", "model.kind"),
    "aggregation.method": ("aggregation", "aggregation.kind"),
    "augment.name": ("augment", "augment.kind"),
}
_warned: set[str] = set()

#: Every key of the nodes earlier releases logged for these groups: a node holding all of them is a full dump.
_OLD_FLAT: dict[str, frozenset[str]] = {
    "corpus": frozenset(
        [
            "name",
            "kind",
            "path",
            "file_column",
            "label_column",
            "speaker_column",
            "split_column",
            "speaker_regex",
            "extensions",
            "allow_outside_root",
            "on_bad_file",
            "demo_speakers",
            "demo_seed",
            "demo_snr_db",
            "speech_root",
            "speech_utts_per_class",
            "positive_labels",
            "negative_class",
        ]
    ),
    "model": frozenset(
        [
            "name",
            "n_blocks",
            "channels",
            "kernel_sizes",
            "pool_size",
            "dropout_conv",
            "fc_sizes",
            "dropout_fc",
            "baseline",
        ]
    ),
}
_OLD_BASELINE = frozenset(
    [
        "features",
        "svm_c",
        "lr_c",
        "inner_folds",
        "rf_trees",
        "dnn_hidden",
        "dnn_dropout",
        "dnn_epochs",
        "dnn_lr",
        "dnn_batch_size",
        "embedding_run",
        "embedding_level",
    ]
)


def _warn(old: str, new: str) -> None:
    if old not in _warned:
        _warned.add(old)
        log.warning("%s is renamed %s (the selector of every group is 'kind'); %s is read as %s", old, new, old, new)


def rewrite_override(override: str) -> str:
    """One Hydra override with an old selector key turned into the group selection (``model.name=svm`` ->
    ``model=svm``); anything else unchanged."""
    key, eq, value = override.partition("=")
    bare = key.lstrip("+~")
    if not eq or bare not in RENAMED:
        return override
    group, new = RENAMED[bare]
    _warn(bare, f"{new} (select it with {group}=...)")
    return f"{group}={value}"


def rewrite_overrides(overrides: Iterable[str]) -> list[str]:
    """:func:`rewrite_override` over a list."""
    return [rewrite_override(str(o)) for o in overrides]


def _field_names(cls: Any) -> dict[str, Any]:
    """Field name -> default factory's type (for nested dataclass fields) of dataclass ``cls``."""
    from dataclasses import MISSING, fields, is_dataclass

    out: dict[str, Any] = {}
    for f in fields(cls):
        nested = f.default_factory() if f.default_factory is not MISSING else None
        out[f.name] = type(nested) if nested is not None and is_dataclass(nested) else None
    return out


def legacy_node(group: str, node: dict[str, Any], config: type | None = None) -> dict[str, Any]:
    """``node`` (a plain mapping of ``group``) with old selector names read as ``kind`` and, for a full dump of an
    earlier release's node, the keys that are not ``config``'s own dropped.

    Args:
        group: ``corpus``, ``model``, ``aggregation``, ``augment`` or ``features``.
        node: The node as a plain dict.
        config: The dataclass of the node's kind (``None``: only the selector is renamed).
    """
    out = dict(node)
    old = {"model": "name", "aggregation": "method", "augment": "name"}.get(group)
    if old and old in out:
        value = out.pop(old)
        if value is not None:
            out["kind"] = value
            _warn(f"{group}.{old}", f"{group}.kind")
    flat = _OLD_FLAT.get(group)
    if config is None or flat is None or not flat <= set(node):
        return out
    own = _field_names(config)
    out = {k: v for k, v in out.items() if k in own or k not in flat}
    nested = own.get("baseline")
    if nested is not None and isinstance(out.get("baseline"), dict):
        mine = _field_names(nested)
        out["baseline"] = {k: v for k, v in out["baseline"].items() if k in mine or k not in _OLD_BASELINE}
    return out
