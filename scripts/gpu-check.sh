#!/usr/bin/env bash
# Prove paraling's GPU path on this machine, in under 8 minutes on one GPU:
#   1. nvidia-smi and what torch sees,
#   2. the CUDA tests (pytest -m gpu: bank on the device, pinned host batches, bf16 choice, graph == eager, an
#      experiment end to end, two seeded runs equal, resume on the device),
#   3. the demo job (`paraling train device=cuda`): MLflow run FINISHED and UAR above chance, training time,
#   4. `paraling bench --device cuda --quick --json`.
# Usage: bash scripts/gpu-check.sh OUT_DIR      (logs, JSON and summary.txt go to OUT_DIR)
# Without CUDA it says so, runs the CUDA tests (they skip), a 2-epoch CPU smoke run of the demo instead of 3, and
# skips the GPU bench. Uses $PYTHON (default python3); paraling must be importable (installed, or on PYTHONPATH).
set -uo pipefail
out=${1:?usage: bash scripts/gpu-check.sh OUT_DIR}
mkdir -p "$out"
out=$(cd "$out" && pwd)
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
work=$(mktemp -d "${TMPDIR:-/tmp}/paraling-gpu-check.XXXXXX")
trap 'rm -rf "$work"' EXIT
failed=()
summary="$out/summary.txt"
: >"$summary"
say() { echo "$*" | tee -a "$summary"; }

say "paraling gpu-check, $(date -u +%Y-%m-%dT%H:%M:%SZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >"$out/nvidia-smi.txt" 2>&1; then
  say "nvidia-smi: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | head -1)"
else
  say "nvidia-smi: not available"
fi
"$PY" - >"$out/torch.txt" 2>&1 <<'EOF'
import torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print("gpu", p.name, "capability", f"{p.major}.{p.minor}", "memory_gib", round(p.total_memory / 2**30, 1))
EOF
cat "$out/torch.txt" | tee -a "$summary"
if "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  cuda=1
else
  cuda=0
  say "CUDA IS ABSENT: the CUDA tests skip, the demo runs as a short CPU smoke run, the GPU bench is skipped."
fi

# 2. CUDA tests
if "$PY" -m pytest -q -p no:cacheprovider -m gpu tests/gpu -rs >"$out/pytest-gpu.log" 2>&1; then
  say "pytest -m gpu: $(tail -1 "$out/pytest-gpu.log")"
else
  say "pytest -m gpu: FAILED ($(tail -1 "$out/pytest-gpu.log"))"
  failed+=(pytest)
fi

# 3. the demo job
if [ "$cuda" = 1 ]; then
  demo_args=(device=cuda)
else
  demo_args=(device=cpu trainer.epochs=2)
fi
export MLFLOW_TRACKING_URI="sqlite:///$work/mlflow.db"
t0=$(date +%s)
if "$PY" -m paraling.cli.main.main train "${demo_args[@]}" corpus.path="$work/demo" cache_dir="$work/cache" progress=never hydra.run.dir="$work/hydra" \
    >"$out/demo.log" 2>&1; then
  "$PY" - "$out/demo.json" "$(( $(date +%s) - t0 ))" "${demo_args[*]}" >>"$summary" 2>&1 <<'EOF'
import json, sys
from mlflow.tracking import MlflowClient
path, wall, args = sys.argv[1], float(sys.argv[2]), sys.argv[3]
client = MlflowClient()
exp = client.get_experiment_by_name("paraling")
run = client.search_runs([exp.experiment_id], order_by=["attributes.start_time DESC"], max_results=1)[0]
classes = json.loads(run.data.params["data.classes"])
out = {
    "args": args, "status": run.info.status, "uar": run.data.metrics["uar"], "chance": 1 / len(classes),
    "training_seconds": run.data.metrics["seconds"], "wall_seconds": wall, "device": run.data.tags["paraling.training.loop.device"],
    "windows_per_s_fold0": run.data.metrics.get("fold0_windows_per_s"),
}
json.dump(out, open(path, "w"), indent=2)
ok = out["status"] == "FINISHED" and out["uar"] > out["chance"]
print(f"demo ({args}): {out['status']}, UAR {out['uar']:.3f} (chance {out['chance']:.3f}), "
      f"{out['training_seconds']:.0f} s in the run, {wall:.0f} s wall{'' if ok else '  <-- FAILED'}")
sys.exit(0 if ok else 1)
EOF
  [ $? = 0 ] || failed+=(demo)
else
  say "demo: FAILED (see demo.log: $(tail -1 "$out/demo.log"))"
  failed+=(demo)
fi

# 4. the GPU bench
if [ "$cuda" = 1 ]; then
  if "$PY" -m paraling.cli.main.main bench --device cuda --quick --json "$out/bench-cuda.json" >"$out/bench-cuda.log" 2>&1; then
    say "bench --device cuda --quick:"
    grep -E '^\(|^total' "$out/bench-cuda.log" | tee -a "$summary"
  else
    say "bench --device cuda: FAILED ($(tail -1 "$out/bench-cuda.log"))"
    failed+=(bench)
  fi
else
  say "bench --device cuda: skipped (no CUDA)"
fi

if [ "${#failed[@]}" -gt 0 ]; then
  say "gpu-check: FAILED: ${failed[*]}"
  exit 1
fi
say "gpu-check: all passed$([ "$cuda" = 1 ] || echo ' (CPU parts only: no CUDA here)')"
