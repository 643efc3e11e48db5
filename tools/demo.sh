#!/usr/bin/env bash
# The mmtkd demo (main job on the embedded default): installs what is missing, lays out real
# Fashion-MNIST data from the Debian package, trains three teachers once (cached), distils a
# student with MTKD-RL and prints a table. Extra arguments go to tools/demo.py.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install.sh
if [ ! -d /usr/share/datasets/fashion-mnist ]; then
  echo "[mmtkd demo] needs the Debian package dataset-fashion-mnist: sudo apt-get install dataset-fashion-mnist" >&2
  exit 1
fi
python tools/demo.py "$@"
