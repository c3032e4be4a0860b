"""``paraling data``: generate the embedded corpora (demo, langid, speech), prepare a standard corpus from its
unpacked root (emodb, ravdess, cremad, iemocap, compare), or list them all."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

__all__ = ["main", "recipes"]

_STANDARD = ("emodb", "ravdess", "cremad", "iemocap", "compare")


def recipes() -> dict[str, Any]:
    """The standard corpora's catalogue entries (importing each recipe registers its entry)."""
    import importlib

    from paraling.data.recipes.standard import CATALOG

    for name in _STANDARD:
        importlib.import_module(f"paraling.data.recipes.{name}")
    return {n: CATALOG[n] for n in _STANDARD}


def _generated(sub: Any) -> None:
    d = sub.add_parser("demo", help="synthetic eating-condition corpus (7 classes, espeak-ng speech + eating noise)")
    d.add_argument("--out", default="data/demo", help="output folder (default: data/demo)")
    d.add_argument("--speakers", type=int, default=30, help="number of speakers (default: 30)")
    d.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    d.add_argument("--utts-per-class", type=int, default=None, help="utterances per speaker and class")
    d.add_argument(
        "--snr-db", type=float, nargs=2, default=None, metavar=("LO", "HI"), help="speech-to-noise range (difficulty)"
    )
    g = sub.add_parser("langid", help="7-language language-ID corpus (transfer source)")
    g.add_argument("--out", default="data/langid", help="output folder (default: data/langid)")
    g.add_argument("--speakers", type=int, default=None, help="number of speaker voices")
    g.add_argument("--seed", type=int, default=0)
    from paraling.data.recipes.speech import DEFAULT_ROOT, SPEAKERS

    s = sub.add_parser(
        "speech",
        help="real recorded speech (Asterisk prompts, 7 speakers) with eating noise",
        description="Needs: apt-get install -y " + " ".join(pkg for _, _, pkgs in SPEAKERS for pkg in pkgs.split()),
    )
    s.add_argument("--out", default="data/speech", help="output folder (default: data/speech)")
    s.add_argument("--root", default=DEFAULT_ROOT, help=f"where the prompt folders are (default: {DEFAULT_ROOT})")
    s.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    s.add_argument("--utts-per-class", type=int, default=6, help="utterances per speaker and class (default: 6)")
    s.add_argument("--snr-db", type=float, nargs=2, default=None, metavar=("LO", "HI"), help="speech-to-noise range")


def _standard(sub: Any) -> None:
    sub.add_parser("list", help="the standard corpora: where to get them, licence, classes, speakers, protocol")
    for name, info in recipes().items():
        r = sub.add_parser(name, help=f"prepare {info.title} from its unpacked root (a manifest)")
        r.add_argument("--root", required=True, help="the folder the corpus was unpacked into")
        r.add_argument("--out", default=f"data/{name}", help=f"where the manifest goes (default: data/{name})")
        r.add_argument("--on-bad-file", choices=("skip", "error"), default="skip")
        if name == "ravdess":
            r.add_argument("--vocal-channel", choices=("speech", "song", "both"), default="speech")
        if name == "compare":
            r.add_argument("--label-column", default=None, help="the label file's label column")
            r.add_argument("--speaker-column", default=None, help="the label file's speaker column, if any")


def build_parser() -> argparse.ArgumentParser:
    """The ``paraling data`` argument parser."""
    p = argparse.ArgumentParser(prog="paraling data", description=__doc__)
    sub = p.add_subparsers(dest="which", required=True)
    _generated(sub)
    _standard(sub)
    return p


def _list() -> str:
    rows = ["| corpus | what | obtain | licence | classes | speakers | utterances | protocol (default cv) |"]
    rows.append("|---|---|---|---|---|---:|---:|---|")
    for name, i in recipes().items():
        classes = ", ".join(i.classes) or "per task"
        speakers, files = i.speakers or "per task", i.files or "per task"
        rows.append(
            f"| {name} | {i.title} | {i.obtain} | {i.licence} | {classes} | {speakers} | {files} | {i.protocol} |"
        )
    return "\n".join(rows)


def _prepare_standard(a: argparse.Namespace) -> Path:
    import importlib

    module = importlib.import_module(f"paraling.data.recipes.{a.which}")
    options: dict[str, Any] = {"on_bad_file": a.on_bad_file}
    if a.which == "ravdess":
        options["vocal_channel"] = a.vocal_channel
    if a.which == "compare":
        options |= {"label_column": a.label_column, "speaker_column": a.speaker_column}
    return Path(getattr(module, f"prepare_{a.which}")(a.root, a.out, **options))


def _generate(a: argparse.Namespace) -> Path:
    kwargs: dict[str, Any] = {"seed": a.seed}
    if getattr(a, "snr_db", None) is not None:
        kwargs["snr_db"] = tuple(a.snr_db)
    if a.which == "speech":
        from paraling.data.recipes.speech import prepare_speech

        return Path(prepare_speech(Path(a.out), a.root, utts_per_class=a.utts_per_class, **kwargs))
    if a.which == "demo":
        from paraling.data.recipes.demo import prepare_demo

        if a.utts_per_class is not None:
            kwargs["utts_per_class"] = a.utts_per_class
        return Path(prepare_demo(Path(a.out), n_speakers=a.speakers, **kwargs))
    from paraling.data.recipes.langid import prepare_langid

    if a.speakers is not None:
        kwargs["n_speakers"] = a.speakers
    return Path(prepare_langid(Path(a.out), **kwargs))


def main(argv: list[str]) -> int:
    """Entry point: prints the table (``list``) or the path of what was written; returns 0."""
    a = build_parser().parse_args(argv)
    if a.which == "list":
        print(_list())
    elif a.which in _STANDARD:
        print(_prepare_standard(a))
    else:
        print(_generate(a))
    return 0
