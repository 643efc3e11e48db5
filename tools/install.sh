#!/usr/bin/env bash
# Install mmtkd and the OpenMMLab stack into the *active* Python interpreter (no venv is created:
# users of OpenMMLab usually bring their own conda/venv; activate it before running this).
#
# Idempotent: every step checks what is already there first, so a second run takes seconds.
#   - torch + torchvision: keeps an installed pair whose torchvision ops load; otherwise installs
#     torch==2.14.1 + torchvision==0.29.1 (x86_64; from the local wheel cache where present) or
#     torch==2.9.1 + torchvision==0.24.1 (aarch64). mmpretrain's pipeline imports torchvision, and
#     PyPI's torchvision cannot load beside the CPU-only torch==2.13.0 wheel.
#   - mmcv 2.1.0: built from source with its ops (no wheel exists for this platform);
#     needs pkg_resources, hence setuptools>=77,<82, and --no-build-isolation.
#   - mmengine / mmdet / mmsegmentation / mmpretrain at the tested versions, then `pip install -e .`.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
PIP="$PY -m pip --disable-pip-version-check"
log() { echo "[mmtkd install] $*"; }

have() { $PY - "$@" <<'PYEOF' 2>/dev/null
import importlib.metadata as md, sys
name, want = sys.argv[1], (sys.argv[2] if len(sys.argv) > 2 else None)
try:
    v = md.version(name)
except md.PackageNotFoundError:
    sys.exit(1)
sys.exit(0 if want is None or v == want else 1)
PYEOF
}

# mmpretrain's data pipeline needs a torchvision whose C++ ops load. PyPI's torchvision does not
# load beside the CPU-only torch 2.13.0 wheel, so a fresh machine gets a matching pair instead.
case "$(uname -m)" in
  aarch64|arm64) TORCH_PAIR="torch==2.9.1 torchvision==0.24.1" ;;
  *)             TORCH_PAIR="torch==2.14.1 torchvision==0.29.1" ;;
esac
torchvision_ok() { $PY -c 'import torch, torchvision; torchvision.ops.nms(torch.zeros(1, 4), torch.zeros(1), 0.5)' 2>/dev/null; }

if have torch && torchvision_ok; then
  log "torch $($PY -c 'import torch;print(torch.__version__)') with a working torchvision already installed: keeping them"
elif have torch; then
  minor=$($PY -c 'import torch; print(torch.__version__.split(".")[1])')
  log "torch is installed without a working torchvision: trying torchvision==0.$((minor + 15)).*"
  $PIP install "torchvision==0.$((minor + 15)).*" || true
  if ! torchvision_ok; then
    log "that torchvision does not load beside this torch; installing the tested pair: $TORCH_PAIR"
    $PIP install $TORCH_PAIR
  fi
else
  log "installing $TORCH_PAIR"
  $PIP install $TORCH_PAIR
fi

if ! $PY -c 'import pkg_resources, setuptools, sys; v=tuple(map(int, setuptools.__version__.split(".")[:2])); sys.exit(0 if (77,0)<=v<(82,0) else 1)' 2>/dev/null; then
  log "installing setuptools>=77,<82 (mmcv's build and mmengine's pkg:: scopes need pkg_resources)"
  $PIP install 'setuptools>=77,<82'
fi
have ninja && have wheel || $PIP install ninja wheel

# mmcv 2.1.0 has no wheel for this platform: build it from its sdist with ops. Its setup.py
# hard-codes -std=c++17, but the headers of torch >= 2.10 need C++20, so the flag is patched
# when torch's headers ask for it. The wheel is kept in ~/.cache/mmtkd, keyed by torch version,
# because a wheel built against another torch would not load.
build_mmcv() {
  local torch_version cache src wheel
  torch_version=$($PY -c 'import torch; print(torch.__version__.replace("+", "_"))')
  cache="${XDG_CACHE_HOME:-$HOME/.cache}/mmtkd/mmcv-2.1.0-torch-$torch_version"
  wheel=$(ls "$cache"/mmcv-2.1.0-*.whl 2>/dev/null | head -n 1 || true)
  if [ -z "$wheel" ]; then
    log "building mmcv 2.1.0 with ops against torch $torch_version (7-12 minutes on 2 cores, once)"
    src=$(mktemp -d)
    $PIP download --no-deps --no-binary :all: 'mmcv==2.1.0' -d "$src"
    tar xzf "$src"/mmcv-2.1.0.tar.gz -C "$src"
    if grep -q 'C++20' "$($PY -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "include", "ATen", "ATen.h"))')"; then
      log "torch needs C++20: patching mmcv's -std=c++17"
      sed -i "s/'-std=c++17'/'-std=c++20'/g" "$src"/mmcv-2.1.0/setup.py
    fi
    mkdir -p "$cache"
    MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-$(nproc)} $PIP wheel --no-build-isolation --no-deps \
      -w "$cache" "$src"/mmcv-2.1.0
    rm -rf "$src"
    wheel=$(ls "$cache"/mmcv-2.1.0-*.whl | head -n 1)
  fi
  $PIP install --no-deps --force-reinstall "$wheel"
}

if have mmcv 2.1.0 && $PY -c 'from mmcv.ops import nms' 2>/dev/null; then
  log "mmcv 2.1.0 with ops already installed"
else
  $PIP install 'mmengine==0.10.7'
  build_mmcv
  $PY -c 'from mmcv.ops import nms' || { log "mmcv ops do not load after the build"; exit 1; }
fi

missing=0
for spec in mmengine==0.10.7 mmdet==3.3.0 mmsegmentation==1.2.2 mmpretrain==1.2.0; do
  have "${spec%%==*}" "${spec##*==}" || missing=1
done
for pkg in matplotlib pycocotools scikit-learn scikit-image tensorboard pytest ftfy regex; do
  have "$pkg" || missing=1
done
if [ "$missing" = 1 ]; then
  log "installing OpenMMLab packages and helpers"
  $PIP install -r requirements.txt ftfy regex
fi

# Real aerial images with tree-crown boxes ship inside deepforest's wheel; only the data is used,
# so its (heavy) dependencies are not installed.
have deepforest 2.1.0 || $PIP install --no-deps 'deepforest==2.1.0'

# Real data for the demo and the dataset-builder tests: Fashion-MNIST from Debian's package.
if [ ! -d /usr/share/datasets/fashion-mnist ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    log "installing the Debian package dataset-fashion-mnist (real images for the demo and tests)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y dataset-fashion-mnist >/dev/null 2>&1 ||
      { apt-get update >/dev/null && apt-get install -y dataset-fashion-mnist >/dev/null; } ||
      log "could not install dataset-fashion-mnist; the demo and the builder tests need it"
  else
    log "not root: install Fashion-MNIST with 'sudo apt-get install dataset-fashion-mnist'"
  fi
fi

repo=$(pwd)
if (cd / && $PY -c 'import mmtkd, os, sys; sys.exit(0 if os.path.samefile(os.path.dirname(mmtkd.__file__), sys.argv[1]) else 1)' "$repo/mmtkd") 2>/dev/null; then
  log "mmtkd already installed in editable mode"
else
  log "installing mmtkd (editable)"
  $PIP install --no-build-isolation --no-deps -e .
fi
log "done: $($PY -c 'import torch, mmcv, mmengine, mmdet, mmseg, mmpretrain; print("torch", torch.__version__, "mmcv", mmcv.__version__, "mmengine", mmengine.__version__, "mmdet", mmdet.__version__, "mmseg", mmseg.__version__, "mmpretrain", mmpretrain.__version__)')"
