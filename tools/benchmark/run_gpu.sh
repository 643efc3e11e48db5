#!/usr/bin/env bash
# The GPU benchmark set, in one go, written to OUT_DIR (6 files); about 8 minutes on one H100
# (2026-11-26), most of it starting one process per row. Per-image teacher-loss kernels for
# comparison: speed.py --rows camkd mtkd_rl --loss-batching image.
#   speed_fp32.json   every row with fp32 teachers (+ profiles.txt: each row's top operators)
#                     and each profiled row's GPU events per step against AVER's (the measured
#                     counterpart of host_ops.py's CPU kernel counts, the 1.03x / 1.10x targets)
#   speed_bf16.json / speed_fp16.json   floor, AVER and MTKD-RL with reduced-precision teachers
#   precision.json    teacher forward speed-up and KD loss change in bf16 / fp16
#   sharing.txt       the teacher-loss micro-benchmark (per call / shared per image / batched)
#
# Usage: [PYTHON=python3] bash tools/benchmark/run_gpu.sh [OUT_DIR] [SIZE] [BATCH]
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-work_dirs/benchmark/gpu}
size=${2:-640}
batch=${3:-8}
PY=${PYTHON:-python}
common=(--size "$size" --batch "$batch" --iters 20 --warmup 5)
"$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else "no CUDA device")'
mkdir -p "$out"
"$PY" tools/benchmark/speed.py "${common[@]}" --profile-dir "$out/profiles" \
  --out "$out/speed_fp32.json"
cat "$out"/profiles/*.txt > "$out/profiles.txt" && rm -r "$out/profiles"
for precision in bf16 fp16; do
  "$PY" tools/benchmark/speed.py "${common[@]}" --teacher-precision "$precision" \
    --rows floor aver mtkd_rl --out "$out/speed_$precision.json"
done
"$PY" tools/benchmark/speed.py "${common[@]}" --precision-check --out "$out/precision.json"
"$PY" tools/benchmark/teacher_loss_sharing.py --size "$size" --batch "$batch" --repeats 10 \
  | tee "$out/sharing.txt"
