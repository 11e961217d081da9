#!/usr/bin/env bash
# GPU check of featdepth's speed on one lent GPU, in under 8 minutes, every part time-boxed.
#
# Records into benchmarks/results/gpu_<date>.md (into $OUT/ when $OUT is set, for transfer back):
#   1. training step time and peak memory: baseline and FeatDepth at 640x192 and the paper setting,
#      fp32 / bf16 / fp16                                         (bench_train.py --device cuda)
#   2. inference throughput, eager and torch.compile              (bench_inference.py --device cuda)
#   3. the largest batch that fits (doubling + bisection, capped) (bench_train.py --find-max-batch)
#   4. a real `featdepth train` run under torchrun: 2 processes with NCCL when two GPUs exist, else one
#      process (stated)                                           (bench_train.py --loader-only --ddp N)
#   5. torch.compile on (train.compile=true); "off" is part 1's bf16 rows
# then prints a summary (status and seconds per part) and the record.
#
# Python: the first of $PYTHON, $GPU_VENV/bin/python, .venv/bin/python, python3 whose torch sees CUDA and
# that imports featdepth's dependencies; else a venv ($GPU_VENV, default .venv-gpu) made from a CUDA-torch
# python with --system-site-packages plus `pip install -e .`; else a plain venv and `pip install -e .`
# (pip resolves torch from the machine's index). No GPU at all: the CPU smoke path (tiny sizes), stated.
#
# Usage: benchmarks/gpu_check.sh [--dry-run] [--cpu] [--budget SECONDS]
#   --dry-run   print the plan (setup and every command with its time box) and exit; runs nothing
#   --cpu       take the CPU smoke path even if a GPU exists (checks the script itself)
#   --budget S  total seconds for everything, setup included (default 450, i.e. 7.5 min)
set -uo pipefail

ORIG_ARGS="$*"
DRY=0
FORCE_CPU=0
BUDGET=${GPU_CHECK_BUDGET:-450}
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY=1 ;;
    --cpu) FORCE_CPU=1 ;;
    --budget) BUDGET=${2:?--budget needs seconds}; shift ;;
    -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
    *) echo "gpu_check.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO" || exit 2
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"  # the workers run from benchmarks/: import this checkout
GPU_VENV=${GPU_VENV:-.venv-gpu}
STAMP=$(date -u +%Y-%m-%d_%H%M)
RESULTS_DIR=${OUT:-$REPO/benchmarks/results}
REC="$RESULTS_DIR/gpu_$STAMP.md"
LOGS=${OUT:+$OUT/gpu_${STAMP}_logs}  # beside the record under $OUT, else in a temporary folder (not the checkout)
LOGS=${LOGS:-${TMPDIR:-/tmp}/featdepth_gpu_check_$STAMP}
START=$SECONDS
RESERVE=15  # seconds kept for the summary
SUMMARY=()

remaining() { echo $(( BUDGET - (SECONDS - START) - RESERVE )); }

# part NAME BOX CMD...: run CMD under `timeout` (the smaller of BOX and the time left), log it, note the status
part() {
  local name=$1 box=$2; shift 2
  local left; left=$(remaining)
  local t=$(( box < left ? box : left ))
  if [ "$DRY" = 1 ]; then
    printf '[plan] %-12s timeout %4ss: %s\n' "$name" "$box" "$*"
    return 0
  fi
  if [ "$t" -lt 20 ]; then
    SUMMARY+=("$(printf '%-12s skipped: out of time (%ss left of %ss)' "$name" "$left" "$BUDGET")")
    echo "== $name: skipped, out of time" >&2
    return 0
  fi
  echo "== $name (time box ${t}s): $*" >&2
  local t0=$SECONDS rc
  timeout -k 10 "$t" "$@" > >(tee "$LOGS/$name.log") 2> >(tee "$LOGS/$name.err" >&2)
  rc=$?
  local status="ok" detail=""
  if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then status="TIMED_OUT"; detail=" after ${t}s (partial results may be in the record)"
  elif [ "$rc" != 0 ]; then status="failed"; detail=" (exit $rc; see $(basename "$LOGS")/$name.err)"; fi
  SUMMARY+=("$(printf '%-12s %-9s %4ss' "$name" "$status" "$((SECONDS - t0))")$detail")
}

has_cuda_torch() { "$1" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' >/dev/null 2>&1; }
has_deps() { "$1" -c 'import torch, torchvision, numpy, PIL, yaml, tqdm, matplotlib, safetensors, featdepth' >/dev/null 2>&1; }
gpu_present() { [ "$FORCE_CPU" = 0 ] && { nvidia-smi -L >/dev/null 2>&1 || [ -e /dev/nvidia0 ]; }; }

candidates() {
  local c
  for c in "${PYTHON:-}" "$GPU_VENV/bin/python" ".venv/bin/python" "$(command -v python3 || true)" "$(command -v python || true)"; do
    [ -n "$c" ] && [ -x "$c" ] && echo "$c"
  done
}

# ---------------------------------------------------------------------------------------------------------
# setup: pick or make a python

PY=""
MODE=gpu
SETUP_NOTE=""
if [ "$DRY" = 1 ]; then
  echo "[plan] record: $REC (logs in $LOGS/); total budget ${BUDGET}s, every part under 'timeout'"
  echo "[plan] setup: the first python among \$PYTHON, $GPU_VENV/bin/python, .venv/bin/python, python3 whose torch"
  echo "[plan]        sees CUDA and imports featdepth's dependencies; else: '<that python> -m venv --system-site-packages"
  echo "[plan]        $GPU_VENV && $GPU_VENV/bin/pip install -e .' (timeout 240s); else: 'python3 -m venv $GPU_VENV &&"
  echo "[plan]        $GPU_VENV/bin/pip install -e .' (timeout 300s); no GPU: the CPU smoke path below"
  PY='$PY'
else
  mkdir -p "$RESULTS_DIR" "$LOGS"
  if gpu_present; then
    while read -r c; do
      if has_cuda_torch "$c" && has_deps "$c"; then PY=$c; SETUP_NOTE="found $c"; break; fi
    done < <(candidates)
    if [ -z "$PY" ]; then
      base=""
      while read -r c; do has_cuda_torch "$c" && { base=$c; break; }; done < <(candidates)
      if [ -n "$base" ]; then
        SETUP_NOTE="venv $GPU_VENV from $base (--system-site-packages) + pip install -e ."
        echo "== setup: $SETUP_NOTE" >&2
        timeout 240 "$base" -m venv --system-site-packages "$GPU_VENV" &&
          timeout 240 "$GPU_VENV/bin/pip" install -q -e . > "$LOGS/setup.log" 2>&1
      else
        SETUP_NOTE="plain venv $GPU_VENV + pip install -e . (torch from the machine's index)"
        echo "== setup: $SETUP_NOTE" >&2
        timeout 60 python3 -m venv "$GPU_VENV" &&
          timeout 300 "$GPU_VENV/bin/pip" install -q -e . > "$LOGS/setup.log" 2>&1
      fi
      if [ -x "$GPU_VENV/bin/python" ] && has_cuda_torch "$GPU_VENV/bin/python" && has_deps "$GPU_VENV/bin/python"; then
        PY="$GPU_VENV/bin/python"
      else
        SETUP_NOTE="$SETUP_NOTE: FAILED (see $(basename "$LOGS")/setup.log)"
      fi
    fi
  fi
  if [ -z "$PY" ]; then
    MODE=cpu
    while read -r c; do has_deps "$c" && { PY=$c; break; }; done < <(candidates)
    if [ -z "$PY" ]; then echo "gpu_check.sh: no python with torch and featdepth's dependencies found" >&2; exit 1; fi
    SETUP_NOTE="${SETUP_NOTE:+$SETUP_NOTE; }no usable CUDA device: CPU smoke path with $PY (tiny sizes; not a GPU record)"
  fi
  SUMMARY+=("$(printf '%-12s %-8s %4ss' setup "$MODE" "$((SECONDS - START))") $SETUP_NOTE")
  {
    echo "# GPU check, $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    echo "- command: \`benchmarks/gpu_check.sh${ORIG_ARGS:+ $ORIG_ARGS}\` (mode: $MODE, budget ${BUDGET}s)"
    echo "- python: $PY ($("$PY" -c 'import sys, torch; print(f"python {sys.version.split()[0]}, torch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}")' 2>&1 | tail -1)); setup: $SETUP_NOTE"
    if [ "$MODE" = gpu ]; then
      echo "- GPUs: $(nvidia-smi --query-gpu=index,name,memory.total,driver_version --format=csv,noheader 2>/dev/null | tr '\n' ';' || echo '?')"
    fi
    echo "- CPU: $(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | xargs), $(getconf _NPROCESSORS_ONLN) cores; load average $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null)"
    echo "- every part time-boxed (timeout); the summary at the end says which finished"
  } > "$REC"
fi

# ---------------------------------------------------------------------------------------------------------
# the parts

BT="benchmarks/bench_train.py"
BI="benchmarks/bench_inference.py"
if [ "$DRY" = 1 ]; then echo "[plan] -- with no usable CUDA device (CPU smoke path, tiny sizes):"; fi
if [ "$MODE" = cpu ] || [ "$DRY" = 1 ]; then
  part train_cpu 200 "$PY" "$BT" --quick --configs md2_baseline,featdepth_r18 --precisions fp32 --no-data \
    --no-calibration --record "$REC" --note "CPU smoke path of gpu_check.sh: no usable CUDA device"
  part infer_cpu 120 "$PY" "$BI" --archs 18 --sizes 320x96 --batches 1 --backends eager --reps 2 --warmup 1 \
    --record "$REC" --note "CPU smoke path of gpu_check.sh"
fi
if [ "$DRY" = 1 ]; then echo "[plan] -- on a GPU:"; fi
if [ "$MODE" = gpu ]; then
  if [ "$DRY" = 1 ]; then NGPU='$NGPU'; NPROC='min(2, $NGPU)'; else
    NGPU=$("$PY" -c 'import torch; print(torch.cuda.device_count())' 2>/dev/null || echo 1)
    NPROC=$(( NGPU >= 2 ? 2 : 1 ))
  fi
  if [ "$DRY" = 0 ] && [ "$NPROC" = 1 ]; then
    echo "- DDP: only one GPU here, so the torchrun run below has ONE process (no NCCL all-reduce measured)" >> "$REC"
  fi
  part train 150 "$PY" "$BT" --device cuda --configs md2_baseline,featdepth_r18,paper --precisions fp32,bf16,fp16 \
    --repeat 5 --warmup 2 --no-data --timeout 45 --record "$REC" --json "$LOGS/train.json" \
    --note "gpu_check.sh part 1: step time and peak memory (CUDA max allocated)"
  part inference 100 "$PY" "$BI" --device cuda --backends eager compile --pairs 18:640x192 50:1024x320 \
    --batches 1 8 32 --warmup 3 --reps 10 --budget 8 --threads 4 --record "$REC" \
    --note "gpu_check.sh part 2: inference on CUDA, float32"
  part max_batch 100 "$PY" "$BT" --device cuda --configs md2_baseline,paper --precisions bf16 \
    --find-max-batch 256 --max-batch-budget 40 --timeout 50 --no-data --record "$REC" --json "$LOGS/max_batch.json" \
    --note "gpu_check.sh part 3: largest batch that fits (bf16), cap 256"
  part ddp 90 "$PY" "$BT" --device cuda --loader-only --ddp "$NPROC" --loader-workers 4 --loader-steps 12 \
    --loader-precision bf16 --timeout 75 --record "$REC" \
    --note "gpu_check.sh part 4: featdepth train under torchrun, $NPROC process(es) on $NGPU GPU(s)"
  part compile 150 "$PY" "$BT" --device cuda --configs md2_baseline,featdepth_r18 --precisions bf16 \
    --set train.compile=true --repeat 5 --warmup 2 --no-data --timeout 120 --record "$REC" --json "$LOGS/compile.json" \
    --note "gpu_check.sh part 5: torch.compile on (off: part 1's bf16 rows)"
fi

# ---------------------------------------------------------------------------------------------------------
# summary

if [ "$DRY" = 1 ]; then
  echo "[plan] summary: status and seconds per part, appended to the record and printed with it"
  exit 0
fi
{
  echo
  echo "## Summary of gpu_check.sh (total $((SECONDS - START)) s of a ${BUDGET} s budget)"
  echo
  echo '```'
  printf '%s\n' "${SUMMARY[@]}"
  echo '```'
} >> "$REC"
echo
echo "================ record: $REC"
cat "$REC"
echo
echo "================ summary"
printf '%s\n' "${SUMMARY[@]}"
case "${SUMMARY[*]}" in *" failed "*|*" TIMED_OUT "*|*"FAILED"*) exit 1 ;; esac
exit 0
