"""Typed utterance manifests, serialised as JSONL (one utterance per line).

Fields: ``id``, ``path`` (absolute), ``label``, ``speaker``, ``duration`` (seconds), optional ``fold`` (int),
``split`` (``train``/``test``/...), ``augmented_from`` (id of the original utterance for augmented copies) and
``extra`` (any further CSV columns, kept verbatim).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from paraling.atomic import atomic_path
from paraling.data.paths import confine
from paraling.errors import CorpusError

__all__ = ["Manifest", "Utterance", "atomic_write_text"]


@dataclass(frozen=True)
class Utterance:
    """One labelled recording."""

    id: str
    path: str
    label: str
    speaker: str
    duration: float
    fold: int | None = None
    split: str | None = None
    augmented_from: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        """Serialise to one JSON line (no trailing newline)."""
        d = {k: v for k, v in asdict(self).items() if v not in (None, {})}
        text = json.dumps(d, ensure_ascii=False)
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # file names that are not valid UTF-8 (surrogate-escaped): \udcXX escapes
            text = json.dumps(d, ensure_ascii=True)
        return text

    @classmethod
    def from_json(cls, line: str, where: str = "") -> Utterance:
        """Parse one JSONL line, raising :class:`CorpusError` naming ``where`` on bad input."""
        try:
            d = json.loads(line)
        except json.JSONDecodeError as exc:
            raise CorpusError(f"{where}: not valid JSON ({exc}); each line must be one utterance object") from exc
        missing = [k for k in ("id", "path", "label", "speaker") if not d.get(k) and d.get(k) != 0]
        if missing:
            raise CorpusError(f"{where}: utterance is missing {missing}; every line needs id, path, label, speaker")
        d.setdefault("duration", 0.0)
        known = {f for f in cls.__dataclass_fields__}
        extra = {k: v for k, v in d.items() if k not in known}
        d = {k: v for k, v in d.items() if k in known}
        d["extra"] = {**d.get("extra", {}), **extra}
        d["label"], d["speaker"], d["id"] = str(d["label"]), str(d["speaker"]), str(d["id"])
        return cls(**d)


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (temp file in the same folder, fsync, rename)."""
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    return path


class Manifest:
    """An ordered, validated collection of :class:`Utterance` (ids unique)."""

    def __init__(self, utterances: Iterable[Utterance], source: str = "<memory>") -> None:
        self.utterances: list[Utterance] = list(utterances)
        self.source = source
        dup = [i for i, n in Counter(u.id for u in self.utterances).items() if n > 1]
        if dup:
            raise CorpusError(
                f"{source}: duplicate utterance ids {dup[:5]}{'...' if len(dup) > 5 else ''}; "
                "ids must be unique (file paths relative to the corpus root are used by default)"
            )
        if not self.utterances:
            raise CorpusError(f"{source}: the corpus has no usable utterances; check the path and file patterns")

    def __len__(self) -> int:
        return len(self.utterances)

    def __iter__(self) -> Iterator[Utterance]:
        return iter(self.utterances)

    def __getitem__(self, i: int) -> Utterance:
        return self.utterances[i]

    @property
    def labels(self) -> list[str]:
        """Sorted class names."""
        return sorted({u.label for u in self.utterances})

    @property
    def speakers(self) -> list[str]:
        """Sorted speaker ids."""
        return sorted({u.speaker for u in self.utterances})

    def with_folds(self, folds: dict[str, int]) -> Manifest:
        """Return a copy with ``fold`` set from ``folds`` (id -> fold)."""
        return Manifest((replace(u, fold=folds.get(u.id, u.fold)) for u in self.utterances), self.source)

    def to_jsonl(self) -> str:
        """Serialise as JSONL text."""
        return "".join(u.to_json() + "\n" for u in self.utterances)

    def write(self, path: str | Path) -> Path:
        """Write the manifest atomically as JSONL."""
        return atomic_write_text(path, self.to_jsonl())

    @classmethod
    def read(cls, path: str | Path, allow_outside_root: bool = False) -> Manifest:
        """Read a JSONL manifest; relative paths are resolved against the manifest's folder.

        Every path must lie inside that folder (resolved, symbolic links included) unless ``allow_outside_root``.

        Raises:
            CorpusError: The manifest is missing, or a path leaves its folder.
        """
        path = Path(path)
        if not path.is_file():
            raise CorpusError(f"{path}: manifest not found; create it with a recipe or check corpus.path")
        root = path.parent
        utts = []
        with open(path, encoding="utf-8") as fh:
            for n, line in enumerate(fh, 1):
                if line.strip():
                    u = Utterance.from_json(line, where=f"{path}:{n}")
                    utts.append(replace(u, path=str(confine(root, u.path, allow_outside_root, f"{path}:{n}"))))
        return cls(utts, source=str(path))

    def audio_digest(self, content: Callable[[str], str]) -> str:
        """A short hash of every original utterance's id and audio bytes (``content(path)`` digests a file's bytes).

        Two corpora with the same ids, labels, speakers and folds but other audio (re-rendered, re-encoded) have the
        same :meth:`digest` and different audio digests: runs trained on them must not be combined.
        """
        h = hashlib.blake2b(digest_size=12)
        for u in sorted((u for u in self.utterances if u.augmented_from is None), key=lambda u: u.id):
            h.update(f"{u.id}\t{content(u.path)}\n".encode())
        return h.hexdigest()

    def digest(self) -> str:
        """A short hash of ids, labels, speakers and folds (logged so runs can be compared)."""
        h = hashlib.blake2b(digest_size=12)
        for u in sorted(self.utterances, key=lambda u: u.id):
            h.update(f"{u.id}\t{u.label}\t{u.speaker}\t{u.fold}\t{u.split}\t{u.augmented_from}\n".encode())
        return h.hexdigest()


def load_manifest(cfg: Any) -> Manifest:
    """The ``manifest`` recipe: a paraling JSONL manifest at ``cfg.path``."""
    return Manifest.read(cfg.path, cfg.allow_outside_root)
