"""What the standard-corpus recipes share: their catalogue entry, the prepare step that skips finished work, and the
checks against each corpus's documented counts.

A recipe (:mod:`~paraling.data.recipes.emodb`, ``ravdess``, ``cremad``, ``iemocap``, ``compare``) scans the corpus
as distributed (its folders and file naming, its label files) into utterances; :func:`prepare` writes them as a
paraling manifest (``manifest.jsonl``) into an output folder with a stamp (``prepared.json``) of the corpus root, the
options and the listing of its audio files, and returns at once when the stamp matches (a finished preparation is
not redone). The corpus tree is only read.
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from paraling.data.manifest import Manifest, Utterance, atomic_write_text
from paraling.data.recipes.common import SkipLog, make_utterance
from paraling.errors import CorpusError

__all__ = [
    "CATALOG",
    "SKIP",
    "CorpusInfo",
    "Parsed",
    "check_counts",
    "left_out",
    "listing",
    "load_prepared",
    "prepare",
    "scan_named",
]

#: What a recipe's name parser returns: ``(label, speaker, extra fields)``, :data:`SKIP` for a name that fits the
#: corpus's scheme but that the recipe's options leave out (RAVDESS's song files), or ``None`` for a name outside it.
Parsed = tuple[str, str, dict[str, Any]] | str | None
SKIP = "skip"

log = logging.getLogger(__name__)

_LISTED = (".wav", ".flac", ".txt", ".tsv", ".csv")  # audio and label files: a change to either prepares again
_STAMP_VERSION = 1


@dataclass(frozen=True)
class CorpusInfo:
    """A standard corpus as ``paraling data list`` shows it.

    Attributes:
        name: ``corpus.kind``.
        title: Its usual name.
        obtain: Where it is obtained.
        licence: Its licence, in a word or two.
        classes: The classes paraling's recipe gives by default.
        speakers: Speakers in the complete corpus.
        files: Utterances the default recipe keeps from the complete corpus (``None``: depends on the task).
        protocol: The literature's evaluation protocol, which the recipe sets as its default ``cv``.
    """

    name: str
    title: str
    obtain: str
    licence: str
    classes: tuple[str, ...]
    speakers: int | None
    files: int | None
    protocol: str


#: Every standard corpus recipe, by ``corpus.kind`` (filled by the recipe modules' entries).
CATALOG: dict[str, CorpusInfo] = {}


def left_out(where: Path, what: str) -> None:
    """Log what a recipe leaves out on purpose (files outside the corpus's naming, labels outside the class set)."""
    log.warning("%s: %s", where, what)


def scan_named(
    where: Path, paths: Iterable[Path], parse: Callable[[str], Parsed], scheme: str, on_bad_file: str, skips: SkipLog
) -> list[Utterance]:
    """Utterances of the audio files ``paths`` whose names ``parse`` reads (a file name stem -> :data:`Parsed`);
    names outside the corpus's ``scheme`` are left out and counted in one log line about ``where``."""
    utts, odd = [], []
    for path in paths:
        got = parse(path.stem)
        if got is None:
            odd.append(path.name)
        elif isinstance(got, tuple):  # else SKIP
            label, speaker, extra = got
            u = make_utterance(path.stem, path, label, speaker, on_bad_file, skips, extra=extra)
            if u is not None:
                utts.append(u)
    if odd:
        left_out(where, f"{len(odd)} file name(s) not in {scheme}'s scheme (e.g. {odd[0]}) left out")
    return utts


def listing(root: Path, folders: Iterable[str] = (".",)) -> dict[str, int]:
    """Count, total size and newest modification time of the audio and label files under ``root``'s ``folders``."""
    count = size = newest = 0
    for folder in folders:
        for dirpath, _, files in os.walk(root / folder):
            for f in files:
                if f.lower().endswith(_LISTED):
                    st = os.stat(os.path.join(dirpath, f))
                    count, size, newest = count + 1, size + st.st_size, max(newest, st.st_mtime_ns)
    return {"files": count, "bytes": size, "newest_ns": newest}


def prepare(
    name: str,
    root: str | Path,
    out_dir: str | Path,
    scan: Callable[[Path, SkipLog], list[Utterance]],
    options: dict[str, Any],
    folders: Iterable[str] = (".",),
) -> Path:
    """Scan ``root`` with ``scan`` into ``out_dir/manifest.jsonl``, unless a finished preparation of the same root,
    options and audio files is there already; returns the manifest's path.

    Raises:
        CorpusError: ``root`` is not a folder (or what ``scan`` raises: a missing folder or label file).
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise CorpusError(f"{root}: corpus folder not found; pass corpus.path (or --root) = the unpacked {name} root")
    out = Path(out_dir)
    manifest, stamp = out / "manifest.jsonl", out / "prepared.json"
    signature = {
        "recipe": name,
        "version": _STAMP_VERSION,
        "root": str(root.resolve()),
        "options": options,
        "listing": listing(root, folders),
    }
    if manifest.is_file() and stamp.is_file():
        try:
            if json.loads(stamp.read_text()) == signature:
                log.info("%s: already prepared in %s", name, out)
                return manifest
        except (OSError, ValueError):
            pass  # an unreadable stamp: prepare again
    skips = SkipLog()
    utts = scan(root, skips)
    if not utts:
        raise CorpusError(f"{root}: no {name} utterances found; is corpus.path the unpacked corpus root?")
    if skips.skipped:
        log.warning("%s: %s", root, skips.summary())
    out.mkdir(parents=True, exist_ok=True)
    Manifest(utts, source=str(root)).write(manifest)
    atomic_write_text(stamp, json.dumps(signature, indent=1, sort_keys=True))  # last: the preparation is finished
    log.info("%s: %d utterances, %d speakers -> %s", name, len(utts), len({u.speaker for u in utts}), manifest)
    return manifest


def load_prepared(name: str, cfg: Any, prepare_fn: Callable[..., Path], **options: Any) -> Manifest:
    """The manifest of a ``corpus`` node of a standard recipe: prepared (or found prepared) in
    ``corpus.manifest_dir``, then read with the node's path confinement."""
    if not cfg.path:
        raise CorpusError(f"corpus={name} needs corpus.path: the folder the corpus was unpacked into")
    out = cfg.manifest_dir or f"data/{name}"
    path = prepare_fn(cfg.path, out, on_bad_file=cfg.on_bad_file, **options)
    manifest = Manifest.read(path, allow_outside_root=True)  # absolute paths written by the recipe from the root
    return Manifest(list(manifest), source=str(cfg.path))


def check_counts(info: CorpusInfo, utts: list[Utterance], complete: bool) -> None:
    """Compare what was parsed with the corpus's documented counts when the tree is complete; log a partial tree.

    Raises:
        CorpusError: A complete tree whose classes or speakers differ from the documented ones.
    """
    labels = Counter(u.label for u in utts)
    speakers = {u.speaker for u in utts}
    if not complete:
        log.info(
            "%s: %d of %s utterances (a partial tree): %d speakers, classes %s",
            info.name,
            len(utts),
            info.files,
            len(speakers),
            dict(sorted(labels.items())),
        )
        return
    if set(labels) != set(info.classes) or (info.speakers is not None and len(speakers) != info.speakers):
        raise CorpusError(
            f"{info.name}: the complete tree should give classes {sorted(info.classes)} and {info.speakers} "
            f"speakers, but gave {sorted(labels)} and {len(speakers)}; files may have been renamed"
        )
