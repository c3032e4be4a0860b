"""``paraling bench [--device cpu|cuda] [--quick] [--json PATH] [--mlflow] [--precision P] [--skip NAME ...]``."""

from __future__ import annotations

import argparse
import sys

__all__ = ["main"]


def main(argv: list[str]) -> int:
    """CLI entry point: run the benchmark suite and print value, reference and ratio per figure."""
    p = argparse.ArgumentParser(prog="paraling bench", description="Speed and memory against naive baselines.")
    p.add_argument("--quick", action="store_true", help="small sizes (< 5 minutes on 2 cores)")
    p.add_argument("--json", default=None, metavar="PATH", help="write the results as JSON")
    p.add_argument("--mlflow", action="store_true", help="log the results as an MLflow run (paraling-bench)")
    p.add_argument(
        "--precision",
        choices=["auto", "fp32", "bf16"],
        default="auto",
        help="fast-path precision (auto: what trainer.precision=auto trains in here, bf16 where the CPU computes it)",
    )
    p.add_argument(
        "--device",
        choices=["cpu", "cuda"],
        default="cpu",
        help="cpu (default): the CPU figures (a)-(j); cuda: (a)-(c), the capture modes and the paper-scale epoch on "
        "the GPU, each against a reference measured on the same GPU",
    )
    p.add_argument("--batch-size", type=int, default=512)
    figures = ["train", "infer", "features", "sweep", "memory", "uar", "prune", "ssl"]
    p.add_argument("--skip", nargs="*", default=[], choices=figures, help="figures to leave out")
    a = p.parse_args(argv)
    from paraling.bench.suite import log_to_mlflow, run_suite, write_json

    if a.device == "cuda":
        from paraling.bench.gpu import run_cuda_suite

        result = run_cuda_suite(a.quick, a.precision, a.batch_size)
    else:
        result = run_suite(a.quick, a.precision, a.batch_size, tuple(a.skip))
    if a.json:
        write_json(result, a.json)
        print(f"wrote {a.json}")
    if a.mlflow:
        print(f"MLflow run {log_to_mlflow(result)}")
    if result.get("failed"):
        print(f"paraling bench: FAILED: {'; '.join(result['failed'])}", file=sys.stderr)
        return 1
    return 0
