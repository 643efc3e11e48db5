#!/usr/bin/env bash
# The mmtkd demo (main job on the embedded default): installs what is missing, builds the
# composite detection set from real images (Fashion-MNIST objects from the Debian package on
# scikit-learn / scikit-image photos), trains three RetinaNet teachers once (cached), distils a
# student with MTKD-RL's official agent and with the credit agent mmtkd recommends, and prints a
# COCO mAP table. Extra arguments go to tools/demo.py, e.g.
# `--task classification` or `--with-aver`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install.sh
if [ ! -d /usr/share/datasets/fashion-mnist ]; then
  echo "[mmtkd demo] needs the Debian package dataset-fashion-mnist: sudo apt-get install dataset-fashion-mnist" >&2
  exit 1
fi
python tools/demo.py "$@"
