#!/usr/bin/env bash
# Wheels for the lent GPU machine (the device tool): it has Python 3.12 with torch 2.11.0+cu130
# and no network, so everything else travels as wheels in WHEEL_DIR (default .whl, which git
# ignores here: name it in the device call's `carry`). mmcv 2.1.0 has no wheel for that torch:
# it is built from its sdist with CUDA ops for sm_90 (H100 / H200) against torch 2.11.0, with
# this machine's nvcc (/usr/local/cuda-13.0) and CUDA 13 headers from PyPI: 27 minutes on this
# project's 2-core VM (2026-11-27). The other packages are PyPI's.
#
# On the device (its transformers 5 breaks mmpretrain 1.2.0's multimodal import, which mmdet
# triggers; the sed makes mmpretrain skip that part, as on 2026-11-26):
#   python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
#   export PYTHONPATH=/tmp/site:$PWD
#   sed -i "s/'transformers>=4.28.0'/'transformers<5.0.0'/" /tmp/site/mmpretrain/utils/dependency.py
#   PYTHON=python3 bash tools/benchmark/run_gpu.sh $OUT 640 8
#
# Usage: bash tools/benchmark/build_gpu_wheels.sh [WHEEL_DIR]
set -euo pipefail
cd "$(dirname "$0")/../.."
out=$(realpath -m "${1:-.whl}")
python312=${PYTHON312:-$(pyenv root)/versions/3.12.1/bin/python}
venv=${GPU_BUILD_VENV:-/tmp/gpuenv}
cuda_home=${CUDA_HOME:-/usr/local/cuda-13.0}
[ -x "$cuda_home/bin/nvcc" ] || { echo "no nvcc in $cuda_home (set CUDA_HOME)" >&2; exit 1; }
mkdir -p "$out"
[ -x "$venv/bin/python" ] || "$python312" -m venv "$venv"
pip=("$venv/bin/python" -m pip --disable-pip-version-check)
"${pip[@]}" install -q torch==2.11.0 'cuda-toolkit[cublas,cusparse,cusolver,cudart]==13.0.2' \
  setuptools wheel ninja packaging
# pure-Python packages and what they need beyond the device's own environment
"${pip[@]}" download -q --no-deps --only-binary=:all: --python-version 3.12 -d "$out" \
  mmengine==0.10.7 mmdet==3.3.0 mmpretrain==1.2.0 mmsegmentation==1.2.2 addict yapf termcolor \
  terminaltables pycocotools shapely platformdirs prettytable mat4py model-index ordered-set \
  wcwidth importlib_metadata==8.7.0 --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux_2_28_x86_64 --platform any
if ! ls "$out"/mmcv-2.1.0-cp312-*.whl > /dev/null 2>&1; then
  build=$(mktemp -d)
  headers=$("$venv/bin/python" -c 'import nvidia.cu13, os; print(os.path.join(nvidia.cu13.__path__[0], "include"))')
  FORCE_CUDA=1 MMCV_WITH_OPS=1 TORCH_CUDA_ARCH_LIST=9.0 CUDA_HOME="$cuda_home" MAX_JOBS=2 \
    CPATH="$headers" "${pip[@]}" wheel -q --no-build-isolation --no-deps -w "$build" mmcv==2.1.0
  # without debug symbols the wheel is about 10x smaller (it travels with every device call)
  "$venv/bin/python" -m wheel unpack -d "$build/unpacked" "$build"/mmcv-*.whl
  find "$build/unpacked" -name '_ext*.so' -exec strip --strip-debug {} +
  "$venv/bin/python" -m wheel pack -d "$out" "$build"/unpacked/mmcv-*
  rm -rf "$build"
fi
ls -la "$out"
