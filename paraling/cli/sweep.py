"""``paraling sweep NAME [--n-trials N] [--workers N | --gpus 0,1 --trials-per-gpu K] [--storage URL] [OVERRIDES...]``.

Runs or resumes the Optuna study of a study file; Hydra overrides after the file apply to every trial. See
``docs/sweeps.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import shlex
import sys
import time

from paraling.errors import SearchError

__all__ = ["main"]

EPILOG = """examples:
  paraling sweep sweeps/demo.yaml corpus=csv corpus.path=data/tones/corpus.csv
  paraling sweep sweeps/demo.yaml --workers 2 --n-trials 20        (resumes: runs only the missing trials)
  paraling sweep sweeps/demo.yaml --gpus 0,1,2,3 --trials-per-gpu 2   (8 workers, each confined to its GPU)
  paraling sweep sweeps/paper.yaml --executor slurm --jobs 16 --slurm-partition gpu --slurm-gpus-per-job 1 \
      --storage postgresql://user:pw@db/optuna                     (16 SLURM array jobs, one worker each)
  paraling sweep sweeps/paper.yaml --storage postgresql://user:pw@db/optuna   (same command on every machine)
  paraling sweep sweeps/demo.yaml --check                           (validate the study file, run nothing)
"""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="paraling sweep",
        description="Run or resume an Optuna study of a study file.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("study", help="study file (sweeps/NAME.yaml) or its NAME")
    p.add_argument("overrides", nargs="*", help="Hydra overrides applied to every trial (e.g. corpus=csv)")
    p.add_argument("--n-trials", type=int, default=None, help="trials the study should hold (default: the file's)")
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="worker processes on this machine (default: one per GPU x --trials-per-gpu; 1 without GPUs)",
    )
    p.add_argument(
        "--gpus",
        default=None,
        help="GPUs to use, e.g. 0,1,2,3 (default: all visible; 'none' for CPU workers); each worker sees one",
    )
    p.add_argument("--trials-per-gpu", type=int, default=1, help="workers (trials at a time) per GPU (default: 1)")
    p.add_argument(
        "--executor",
        choices=["process", "local", "slurm"],
        default="process",
        help="where workers run: processes here (default), or submitit jobs: slurm (a cluster) or local",
    )
    p.add_argument("--jobs", type=int, default=1, help="with --executor local|slurm: jobs in the array (workers)")
    p.add_argument("--slurm-partition", default=None, help="SLURM partition of the jobs")
    p.add_argument("--slurm-gpus-per-job", type=int, default=0, help="GPUs per job (default: 0)")
    p.add_argument("--slurm-time", type=int, default=24 * 60, help="time limit per job in minutes (default: 1440)")
    p.add_argument("--slurm-cpus-per-job", type=int, default=None, help="CPU cores per job")
    p.add_argument("--executor-folder", default=None, help="submitit job files and logs (default: beside the journal)")
    p.add_argument(
        "--storage",
        default=None,
        help="journal file path, sqlite:///FILE or postgresql://USER:PW@HOST/DB (default: sweeps/<study>/journal.log)",
    )
    p.add_argument("--study-name", default=None, help="Optuna study name (default: the file's study_name)")
    p.add_argument("--timeout", type=float, default=None, help="start no trial after this many seconds")
    p.add_argument("--dashboard", action="store_true", help="serve optuna-dashboard on the storage meanwhile")
    p.add_argument("--dashboard-port", type=int, default=8080, help="optuna-dashboard port (default: 8080)")
    p.add_argument("--check", action="store_true", help="validate the study file against the config and exit")
    return p


def main(argv: list[str]) -> int:
    """Parse the command line, run the sweep, print the summary.

    Returns:
        0 when the study is complete (or stopped by its timeout), 130 after Ctrl-C.

    Raises:
        ConfigError: The study file or an override is invalid (nothing ran).
        SearchError: The failure budget stopped the sweep, workers died, or the storage is unusable.
    """
    a = _parser().parse_intermixed_args(argv)
    from paraling.search import SweepOptions, load_study_spec, run_sweep

    spec = load_study_spec(a.study)
    if a.check:
        from paraling.search.probe import check_against_config
        from paraling.search.worker import compose_fn, hydra_context

        spec = spec.with_options(a.n_trials, a.study_name, a.storage, a.timeout)
        with hydra_context():
            check_against_config(spec, list(a.overrides), compose_fn())
        print(
            f"{spec.path}: OK — study {spec.study_name}, {len(spec.space.params)} parameters, "
            f"sampler {spec.sampler_description()}, pruner {spec.pruner_description()}, n_trials {spec.n_trials}"
        )
        for p in spec.space.params:
            print(f"  {p.name}: {p.describe()}")
        return 0
    from paraling.search.executors import ExecutorOptions
    from paraling.search.gpus import parse_gpus

    if a.jobs < 1:
        raise SearchError(f"--jobs must be >= 1, but got {a.jobs}")
    executor = None
    if a.executor != "process":
        executor = ExecutorOptions(
            kind=a.executor,
            jobs=a.jobs,
            folder=a.executor_folder,
            partition=a.slurm_partition,
            gpus_per_job=a.slurm_gpus_per_job,
            time_min=a.slurm_time,
            cpus_per_job=a.slurm_cpus_per_job,
        )
    options = SweepOptions(
        executor=executor,
        n_trials=a.n_trials,
        workers=a.workers,
        gpus=parse_gpus(a.gpus),
        trials_per_gpu=a.trials_per_gpu,
        storage=a.storage,
        study_name=a.study_name,
        timeout=a.timeout,
        overrides=list(a.overrides),
        dashboard=a.dashboard,
        dashboard_port=a.dashboard_port,
    )
    command = "paraling sweep " + " ".join(shlex.quote(x) for x in argv)
    summary = run_sweep(spec, options, command)
    print(summary.format(), flush=True)
    if a.dashboard and summary.stopped != "interrupted":
        print(f"optuna-dashboard still serving http://127.0.0.1:{a.dashboard_port} (Ctrl-C to quit)", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                time.sleep(3600)
    if summary.stopped == "interrupted":
        return 130
    if not summary.ok:
        raise SearchError(summary.error_line())
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
