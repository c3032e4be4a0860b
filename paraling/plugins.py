"""Plug-in points: a registry per kind of thing users add (corpus recipes, feature extractors, models, votes).

An entry is a name (what the config group's selector key ``kind`` says), the object that does the work, and the
typed dataclass of its config node, which holds only that kind's keys. A user's class or function is registered
with the registry's decorator in the user's own module, for example a corpus recipe::

    from dataclasses import dataclass
    from paraling.config_groups import CorpusConfig
    from paraling.data.recipes import register_corpus

    @dataclass
    class MyCorpusConfig(CorpusConfig):
        kind: str = "mine"
        min_seconds: float = 0.5

    @register_corpus("mine", config=MyCorpusConfig)
    def load_mine(cfg: MyCorpusConfig) -> Manifest: ...

The module is imported before the configuration is validated when it is named in the config's top-level
``plugins`` list (``plugins: [my_pkg.recipes]``, e.g. in an experiment file of the user's ``--config-dir``), in the
``PARALING_PLUGINS`` environment variable (comma-separated), or advertised by an installed package under the
``paraling.plugins`` entry-point group; the last two are imported before Hydra composes, so the user's YAML may also
start from the registered schema (``defaults: [mine_schema, _self_]``). docs/extending.md walks through it.

Why a registry of names rather than Hydra's ``_target_`` import paths: the names are what configs select and sweeps
search (``model: [cnn, svm]``) and what error messages offer as the choices (a registry can list what exists); a
``_target_`` would make every config carry an import path and leave no list of what exists. Registering follows
lhotse's ``register_extractor``; building stays paraling's (:meth:`Registry.typed` validates a node against the
entry's dataclass, OmegaConf doing the type checks).
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, Generic, TypeVar

from paraling.errors import ConfigError

__all__ = ["ENTRY_POINT_GROUP", "PLUGINS_ENV", "Entry", "Registry", "load_plugins", "store_schemas"]

log = logging.getLogger(__name__)

T = TypeVar("T")
ENTRY_POINT_GROUP = "paraling.plugins"
PLUGINS_ENV = "PARALING_PLUGINS"
_loaded: set[str] = set()
_registries: list[Registry[Any]] = []


@dataclass(frozen=True)
class Entry(Generic[T]):
    """One registered kind.

    Attributes:
        kind: Its name (the config's ``kind``).
        target: What does the work, or ``"module:attribute"`` resolved on first use (built-ins stay unimported).
        config: The dataclass of its config node.
        info: Anything else the registry's users read (``level`` of a model, a corpus's licence ...).
    """

    kind: str
    target: T | str
    config: type
    info: Mapping[str, Any] = field(default_factory=dict)

    def load(self) -> T:
        """The target (imported now when registered by name)."""
        if not isinstance(self.target, str):
            return self.target
        module, _, attr = self.target.partition(":")
        obj = importlib.import_module(module)
        for part in attr.split("."):
            obj = getattr(obj, part)
        return obj  # type: ignore[return-value]


class Registry(Generic[T]):
    """The registered kinds of one config group.

    Args:
        group: The config group and key prefix (``corpus``, ``features``, ``model``, ``aggregation``).
        what: What an entry is, in messages (``corpus recipe``).
    """

    def __init__(self, group: str, what: str) -> None:
        self.group, self.what = group, what
        self._entries: dict[str, Entry[T]] = {}
        _registries.append(self)

    def register(self, kind: str, *, config: type, replace: bool = False, **info: Any) -> Callable[[T], T]:
        """Decorator registering ``target`` as ``kind`` with config dataclass ``config``.

        Raises:
            ConfigError: ``kind`` is taken (unless ``replace``), or ``config`` is not a dataclass with a ``kind`` field.
        """

        def add(target: T) -> T:
            self.add(Entry(kind, target, config, dict(info)), replace)
            return target

        return add

    def add(self, entry: Entry[T], replace: bool = False) -> None:
        """Register ``entry`` (its schema reaches Hydra's ConfigStore through :func:`store_schemas`)."""
        if not is_dataclass(entry.config) or "kind" not in {f.name for f in fields(entry.config)}:
            raise ConfigError(f"{self.what} {entry.kind!r}: config must be a dataclass with a 'kind' field")
        if entry.kind in self._entries and not replace and self._entries[entry.kind] != entry:
            raise ConfigError(f"{self.group}.kind={entry.kind!r} is registered already ({self._entries[entry.kind]})")
        self._entries[entry.kind] = entry

    def kinds(self) -> list[str]:
        """The registered names, in registration order."""
        return list(self._entries)

    def __contains__(self, kind: object) -> bool:
        return kind in self._entries

    def entry(self, kind: str) -> Entry[T]:
        """The entry of ``kind``.

        Raises:
            ConfigError: Naming ``<group>.kind``, the value and the registered choices.
        """
        try:
            return self._entries[kind]
        except KeyError:
            raise ConfigError(
                f"{self.group}.kind must be one of {self.kinds()}, but got kind={kind!r} (a {self.what} of your own "
                f"is registered from a plugin module: docs/extending.md)"
            ) from None

    def typed(self, node: Any) -> Any:
        """``node`` (a config node or mapping) validated against its kind's dataclass: a typed ``DictConfig``.

        Raises:
            ConfigError: An unknown kind, a key the kind does not have (naming the kind's keys), or a value of the
                wrong type.
        """
        from omegaconf import OmegaConf
        from omegaconf.errors import OmegaConfBaseException

        plain = OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else dict(node)
        if not isinstance(plain, dict):
            raise ConfigError(f"{self.group} must be a mapping with a 'kind', but got {plain!r}")
        entry = self.entry(str(plain.get("kind")))
        schema = OmegaConf.structured(entry.config)
        unknown = sorted(set(plain) - set(schema.keys()))
        if unknown:
            raise ConfigError(
                f"{self.group}.{unknown[0]} is not a key of the {entry.kind!r} {self.what} (its keys: "
                f"{sorted(schema.keys())}); remove it or select another {self.group}"
            )
        try:
            return OmegaConf.merge(schema, plain)
        except OmegaConfBaseException as exc:
            where = f"{self.group}.{exc.full_key}" if getattr(exc, "full_key", None) else self.group
            msg = str(exc).splitlines()[0]
            raise ConfigError(f"{where}: {msg}") from None


def store_schemas() -> None:
    """Every registered kind's dataclass into Hydra's ConfigStore as ``<group>/<kind>_schema`` (so a group's YAML
    may start from it with ``defaults: [<kind>_schema, _self_]``); called before Hydra composes."""
    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    for registry in _registries:
        for entry in registry._entries.values():
            cs.store(group=registry.group, name=f"{entry.kind}_schema", node=entry.config)


def _entry_point_modules() -> list[str]:
    from importlib.metadata import entry_points

    return [ep.value.partition(":")[0] for ep in entry_points(group=ENTRY_POINT_GROUP)]


def load_plugins(modules: Iterable[str] = (), *, environment: bool = True) -> list[str]:
    """Import plug-in modules (each once): ``modules``, then (with ``environment``) those named by
    ``$PARALING_PLUGINS`` and by installed packages' ``paraling.plugins`` entry points.

    Returns:
        The modules imported now.

    Raises:
        ConfigError: A module that cannot be imported (naming it and the import error).
    """
    names = [str(m).strip() for m in modules if str(m).strip()]
    if environment:
        names += [m.strip() for m in os.environ.get(PLUGINS_ENV, "").split(",") if m.strip()]
        names += _entry_point_modules()
    done = []
    for name in dict.fromkeys(names):
        if name in _loaded:
            continue
        try:
            importlib.import_module(name)
        except Exception as exc:  # ImportError, or anything the module raises while registering
            raise ConfigError(
                f"plugins: cannot import {name!r} ({type(exc).__name__}: {exc}); check that it is on PYTHONPATH or "
                "installed, and the module name"
            ) from None
        _loaded.add(name)
        done.append(name)
        log.debug("loaded plugin module %s", name)
    return done
