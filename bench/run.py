"""Run the benchmark suite: ``python bench/run.py --quick`` (same flags as ``paraling bench``)."""

import sys

from paraling.cli.bench import main

if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
