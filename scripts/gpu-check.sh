#!/usr/bin/env bash
# Prove paraling's GPU path on this machine (under 8 minutes on one H100); CI runs the same script on the CPU.
#   1. nvidia-smi and what torch sees;
#   2. the CUDA tests (pytest -m gpu)                                                [CUDA only]
#   3. the demo job through the installed `paraling` command: MLflow run FINISHED, UAR above chance, the device and
#      the training step it recorded (paraling.device / .capture), windows/s of fold 0;
#   4. a 4-trial sweep: on CUDA `--gpus 0 --trials-per-gpu 4` (four workers sharing GPU 0), on the CPU `--gpus none
#      --workers 2`; every trial COMPLETE, nothing left RUNNING in Optuna or MLflow, the device (and GPU) each
#      trial recorded;
#   5. `paraling bench --device cpu --quick` on a small subset (training and inference figures);
#   6. `paraling bench --device cuda --quick`                                           [CUDA only]
#   7. features=ssl: a tiny random speech encoder saved like a real one, `paraling train features=ssl model=ssl_head`
#      on the device: run FINISHED, the encoder and the extraction precision it recorded (bf16 on a GPU).
# Each step has its own time limit (seconds: STEP_TIMEOUT_<STEP> overrides it). Without CUDA the CUDA-only steps are
# skipped and the demo and the sweep run small on the CPU; the script then ends "all passed (CPU parts only ...)".
# Usage: bash scripts/gpu-check.sh OUT_DIR      (logs, JSON and summary.txt go to OUT_DIR)
# Needs the `paraling` command on PATH (pip install -e . or scripts/install.sh); $PYTHON (default python3) runs the
# read-back helper scripts/gpu_check.py.
set -uo pipefail
out=${1:?usage: bash scripts/gpu-check.sh OUT_DIR}
mkdir -p "$out"
out=$(cd "$out" && pwd)
cd "$(dirname "$0")/.."
root=$PWD
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
work=$(mktemp -d "${TMPDIR:-/tmp}/paraling-gpu-check.XXXXXX")
trap 'rm -rf "$work"' EXIT
failed=()
summary="$out/summary.txt"
: >"$summary"
say() { echo "$*" | tee -a "$summary"; }
# run_step NAME LIMIT LOG CMD...: CMD under `timeout`, its output in LOG; a timeout is reported as such
run_step() {
  local name=$1 limit=$2 log=$3
  shift 3
  local var="STEP_TIMEOUT_${name^^}"
  limit=${!var:-$limit}
  timeout --kill-after=20 "$limit" "$@" >"$log" 2>&1
  local rc=$?
  if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then echo "(timed out after ${limit} s)" >>"$log"; fi
  return "$rc"
}
fail() { say "$1: FAILED ($2)"; failed+=("$1"); }
# readback NAME LOG ARGS...: scripts/gpu_check.py ARGS, its one line into the summary; non-zero marks NAME failed
readback() {
  local name=$1 log=$2
  shift 2
  "$PY" scripts/gpu_check.py "$@" >"$work/line" 2>>"$log"
  local rc=$?
  [ -s "$work/line" ] || echo "$name: read-back failed (see $(basename "$log"): $(tail -1 "$log"))" >"$work/line"
  tee -a "$summary" <"$work/line"
  [ "$rc" = 0 ] || failed+=("$name")
}

say "paraling gpu-check, $(date -u +%Y-%m-%dT%H:%M:%SZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
if ! command -v paraling >/dev/null 2>&1; then
  say "gpu-check: FAILED: the paraling command is not on PATH (install the project: pip install -e . or bash scripts/install.sh)"
  exit 1
fi
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
tee -a "$summary" <"$out/torch.txt"
if "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  cuda=1
  device=cuda
  capture=graph
  demo_args=(device=cuda)                          # the default demo job: 30 speakers, 15 epochs, 5 folds
  sweep_args=(--gpus 0 --trials-per-gpu 4)
  sweep_over=(trainer.epochs=3)
  ssl_over=(trainer.epochs=3)
else
  cuda=0
  device=cpu
  capture=eager
  say "CUDA IS ABSENT: the CUDA tests and the GPU bench are skipped; the demo and the sweep run small on the CPU."
  demo_args=(device=cpu corpus.demo_speakers=8 cv.folds=2 trainer.epochs=2 'model.channels=[8,16,16]' 'model.fc_sizes=[64]')
  sweep_args=(--gpus none --workers 2)
  sweep_over=(trainer.epochs=1 corpus.demo_speakers=8 'model.channels=[8,16,16]' 'model.fc_sizes=[64]')
  ssl_over=(trainer.epochs=2 corpus.demo_speakers=8 cv.folds=2)
fi
export MLFLOW_TRACKING_URI="sqlite:///$work/mlflow.db"
common=(corpus.path="$work/demo" cache_dir="$work/cache" progress=never)

# 2. the CUDA tests
if [ "$cuda" = 1 ]; then
  if run_step pytest 150 "$out/pytest-gpu.log" "$PY" -m pytest -q -p no:cacheprovider -m gpu tests/gpu -rs; then
    say "pytest -m gpu: $(tail -1 "$out/pytest-gpu.log")"
  else
    fail "pytest -m gpu" "$(tail -1 "$out/pytest-gpu.log")"
  fi
else
  say "pytest -m gpu: skipped (no CUDA)"
fi

# 3. the demo job
t0=$(date +%s)
if run_step demo 240 "$out/demo.log" paraling train "${demo_args[@]}" "${common[@]}" hydra.run.dir="$work/hydra"; then
  readback demo "$out/demo.log" demo "$out/demo.json" "$(($(date +%s) - t0))" "$device" "$capture"
else
  fail demo "see demo.log: $(tail -1 "$out/demo.log")"
fi

# 4. a 4-trial sweep
cat >"$work/gpu-check.yaml" <<'EOF'
study_name: gpu-check
description: four tiny trials, one per window width (scripts/gpu-check.sh)
overrides: [cv.folds=2, tracking.log_model=false]
space:
  windows.width: [11, 13, 15, 17]
sampler: {name: grid}
pruner: none
n_trials: 4
EOF
if run_step sweep 150 "$out/sweep.log" paraling sweep "$work/gpu-check.yaml" "${sweep_args[@]}" \
    --storage "$work/journal.log" "${sweep_over[@]}" "${common[@]}" device=$device; then
  gpu=()
  [ "$cuda" = 1 ] && gpu=(0)
  readback sweep "$out/sweep.log" sweep "$out/sweep.json" "$work/journal.log" gpu-check 4 "$device" "${gpu[@]}"
else
  fail sweep "see sweep.log: $(tail -1 "$out/sweep.log")"
fi

# 5. the CPU bench, small subset (training and inference figures)
if run_step bench_cpu 180 "$out/bench-cpu.log" paraling bench --device cpu --quick \
    --skip features sweep memory uar prune ssl --json "$out/bench-cpu.json"; then
  say "bench --device cpu --quick (train, infer):"
  grep -E '^\(' "$out/bench-cpu.log" | tee -a "$summary"
else
  fail "bench --device cpu" "$(tail -1 "$out/bench-cpu.log")"
fi

# 6. the GPU bench
if [ "$cuda" = 1 ]; then
  if run_step bench_cuda 120 "$out/bench-cuda.log" paraling bench --device cuda --quick --json "$out/bench-cuda.json"; then
    say "bench --device cuda --quick:"
    grep -E '^\(|^total' "$out/bench-cuda.log" | tee -a "$summary"
  else
    fail "bench --device cuda" "$(tail -1 "$out/bench-cuda.log")"
  fi
else
  say "bench --device cuda: skipped (no CUDA)"
fi

# 7. features=ssl on the device (the tiny encoder is written first, as save_pretrained writes a real one)
if "$PY" -c 'import sys; from pathlib import Path; from paraling.bench.encoders import save_tiny_encoder
save_tiny_encoder("wav2vec2", Path(sys.argv[1]))' "$work/encoder" >"$out/ssl-encoder.log" 2>&1 &&
  run_step ssl 240 "$out/ssl.log" paraling train features=ssl features.model="$work/encoder" model=ssl_head \
    windows.width=50 windows.shift=25 tracking.experiment=gpu-check-ssl device=$device "${ssl_over[@]}" \
    "${common[@]}" hydra.run.dir="$work/hydra-ssl"; then
  readback ssl "$out/ssl.log" ssl "$out/ssl.json" "$device"
else
  fail ssl "see ssl.log / ssl-encoder.log: $(tail -1 "$out/ssl.log" "$out/ssl-encoder.log" 2>/dev/null | tail -1)"
fi

cd "$root" || exit 1
if [ "${#failed[@]}" -gt 0 ]; then
  say "gpu-check: FAILED: ${failed[*]}"
  exit 1
fi
say "gpu-check: all passed$([ "$cuda" = 1 ] || echo ' (CPU parts only: no CUDA here)')"
