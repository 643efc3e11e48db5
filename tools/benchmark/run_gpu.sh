#!/usr/bin/env bash
# The GPU benchmark set, in one go: speed / memory rows with fp32 teachers, the distillation rows
# again with bf16 and fp16 teachers, and the reduced-precision check (teacher forward speed-up
# and KD loss change). Tables are printed and written as JSON to OUT_DIR.
#
# Usage: bash tools/benchmark/run_gpu.sh [OUT_DIR] [SIZE] [BATCH]
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-work_dirs/benchmark/gpu}
size=${2:-640}
batch=${3:-8}
common=(--size "$size" --batch "$batch" --iters 20 --warmup 5)
python -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else "no CUDA device")'
mkdir -p "$out"
python tools/benchmark/speed.py "${common[@]}" --out "$out/speed_fp32.json"
for precision in bf16 fp16; do
  python tools/benchmark/speed.py "${common[@]}" --teacher-precision "$precision" \
    --rows floor aver mtkd_rl --out "$out/speed_$precision.json"
done
python tools/benchmark/speed.py "${common[@]}" --precision-check --out "$out/precision.json"
