"""Thin command-line entry points: ``paraling train|data|sweep|ensemble|predict|report|bench|cache``.

``paraling train`` is a Hydra application (overrides, ``-m`` multirun, ``--cfg job``...); the other commands parse
their own flags and call one library function each. A :class:`~paraling.errors.ParalingError` is printed as one line
(``paraling: error: ...``) with exit code 2, never as a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path

from paraling.config import CONF_DIR
from paraling.errors import ParalingError
from paraling.secrets import install_log_masking, mask_secrets

__all__ = ["CONF_DIR", "main"]

log = logging.getLogger("paraling")


def _fail(exc: BaseException) -> None:
    print(mask_secrets(f"paraling: error: {exc}"), file=sys.stderr)
    raise SystemExit(getattr(exc, "exit_code", 2))


def _mask_hydra_files() -> None:
    """Mask secrets in the files Hydra wrote before the job started (``.hydra/*.yaml``, ``multirun.yaml``)."""
    from hydra.core.hydra_config import HydraConfig

    hc = HydraConfig.get()
    files = list(Path(hc.runtime.output_dir).glob(".hydra/*.yaml"))
    if hc.mode is not None and hc.mode.name == "MULTIRUN":
        files.append(Path(hc.sweep.dir) / "multirun.yaml")
    for f in files:
        try:
            text = f.read_text()
            masked = mask_secrets(text)
            if masked != text:
                f.write_text(masked)
        except OSError:
            continue


def _train(argv: list[str]) -> int:
    import hydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import DictConfig

    from paraling.config import register_configs

    register_configs()

    @hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")
    def train(cfg: DictConfig) -> float:
        from paraling.pipeline.experiment import run_experiment
        from paraling.report.summary import print_summary

        install_log_masking()  # Hydra has just set up the job's logging
        try:
            overrides = list(HydraConfig.get().overrides.task)
            _mask_hydra_files()
        except ValueError:
            overrides = []
        try:
            result = run_experiment(cfg, overrides=overrides)
        except ParalingError as exc:
            _fail(exc)
        except Exception:  # an unexpected error: its traceback, with secrets masked (Hydra would print it raw)
            import traceback

            print(mask_secrets(traceback.format_exc()), file=sys.stderr)
            raise SystemExit(1) from None
        print_summary(result, cfg)
        return result.uar

    from paraling.config_compat import rewrite_override

    sys.argv = ["paraling train", *(a if a.startswith("-") else rewrite_override(a) for a in argv)]
    train()
    return 0


def _data(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="paraling data", description="Generate the embedded corpora.")
    sub = p.add_subparsers(dest="which", required=True)
    d = sub.add_parser("demo", help="synthetic eating-condition corpus (7 classes, espeak-ng speech + eating noise)")
    d.add_argument("--out", default="data/demo", help="output folder (default: data/demo)")
    d.add_argument("--speakers", type=int, default=30, help="number of speakers (default: 30)")
    d.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    d.add_argument("--utts-per-class", type=int, default=None, help="utterances per speaker and class")
    d.add_argument(
        "--snr-db",
        type=float,
        nargs=2,
        default=None,
        metavar=("LO", "HI"),
        help="speech-to-eating-noise ratio range (difficulty)",
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
    a = p.parse_args(argv)
    kwargs: dict = {"seed": a.seed}
    if a.which == "speech":
        from paraling.data.recipes.speech import prepare_speech

        if a.snr_db is not None:
            kwargs["snr_db"] = tuple(a.snr_db)
        print(prepare_speech(Path(a.out), a.root, utts_per_class=a.utts_per_class, **kwargs))
        return 0
    if a.which == "demo":
        from paraling.data.recipes.demo import prepare_demo

        if a.utts_per_class is not None:
            kwargs["utts_per_class"] = a.utts_per_class
        if a.snr_db is not None:
            kwargs["snr_db"] = tuple(a.snr_db)
        path = prepare_demo(Path(a.out), n_speakers=a.speakers, **kwargs)
    else:
        from paraling.data.recipes.langid import prepare_langid

        if a.speakers is not None:
            kwargs["n_speakers"] = a.speakers
        path = prepare_langid(Path(a.out), **kwargs)
    print(path)
    return 0


COMMANDS: dict[str, tuple[str, str]] = {
    # name: (module, help); each module exposes ``main(argv: list[str]) -> int``
    "sweep": ("paraling.cli.sweep", "run or resume an Optuna study from sweeps/NAME.yaml"),
    "ensemble": ("paraling.cli.ensemble", "assemble an ensemble from tracked runs"),
    "predict": ("paraling.cli.predict", "label new audio files with a trained model"),
    "report": ("paraling.cli.report", "comparison table of tracked experiments"),
    "bench": ("paraling.cli.bench", "speed/memory benchmarks against naive baselines"),
    "cache": ("paraling.cli.cache", "inspect or clean the feature cache"),
}


def _usage() -> str:
    lines = [
        "usage: paraling COMMAND [ARGS...]",
        "",
        "commands:",
        "  train      train and cross-validate (Hydra: paraling train model.n_blocks=4 ..., -m for multirun)",
        "  data       generate the embedded corpora (paraling data demo|langid|speech --out DIR)",
    ]
    lines += [f"  {k:<10} {h}" for k, (_, h) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``paraling`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    cmd, rest = argv[0], argv[1:]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    install_log_masking()
    handlers: dict[str, Callable[[list[str]], int]] = {"train": _train, "data": _data}
    try:
        if cmd in handlers:
            return handlers[cmd](rest)
        if cmd in COMMANDS:
            import importlib

            try:
                module = importlib.import_module(COMMANDS[cmd][0])
            except ModuleNotFoundError as exc:
                if exc.name != COMMANDS[cmd][0]:
                    raise
                raise ParalingError(f"'paraling {cmd}' is not available in this version") from exc
            return int(module.main(rest) or 0)
    except ParalingError as exc:
        _fail(exc)
    print(f"paraling: error: unknown command {cmd!r}\n\n{_usage()}", file=sys.stderr)
    return 2


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
