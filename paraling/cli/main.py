"""Thin command-line entry points: ``paraling train|data|sweep|ensemble|predict|report|bench|cache``.

``paraling train`` is a Hydra application (overrides, ``-m`` multirun, ``--cfg job``...); the other commands parse
their own flags and call one library function each. A :class:`~paraling.errors.ParalingError` is printed as one line
(``paraling: error: ...``) with exit code 2, never as a traceback.
"""

from __future__ import annotations

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
        from paraling.serving.challenge import write_challenge_predictions

        written = write_challenge_predictions(cfg, result.run_id)  # corpus=compare: the withheld test set
        if written:
            print(f"  test predictions: {written} (artifact of the run)")
        return result.uar

    from paraling.config_compat import rewrite_override

    sys.argv = ["paraling train", *(a if a.startswith("-") else rewrite_override(a) for a in argv)]
    train()
    return 0


COMMANDS: dict[str, tuple[str, str]] = {
    # name: (module, help); each module exposes ``main(argv: list[str]) -> int``
    "data": ("paraling.cli.data", "corpora: generate the embedded ones, prepare standard ones, list them"),
    "sweep": ("paraling.cli.sweep", "run or resume an Optuna study from sweeps/NAME.yaml"),
    "ensemble": ("paraling.cli.ensemble", "assemble an ensemble from tracked runs"),
    "export": ("paraling.cli.export", "a trained model as an ONNX folder that runs without PyTorch"),
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
    handlers: dict[str, Callable[[list[str]], int]] = {"train": _train}
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
