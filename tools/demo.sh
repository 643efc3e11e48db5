#!/usr/bin/env bash
# The mmtkd demo (main job on the embedded default): installs what is missing, lays out real
# Fashion-MNIST data from the Debian package, trains three teachers once (cached), distils a
# student with MTKD-RL and prints a table. Extra arguments go to tools/demo.py.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install.sh
if [ ! -d /usr/share/datasets/fashion-mnist ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "[mmtkd demo] installing the Debian package dataset-fashion-mnist"
    (export DEBIAN_FRONTEND=noninteractive; apt-get install -y dataset-fashion-mnist || { apt-get update && apt-get install -y dataset-fashion-mnist; }) >/dev/null
  else
    echo "[mmtkd demo] needs the Debian package dataset-fashion-mnist: sudo apt-get install dataset-fashion-mnist" >&2
    exit 1
  fi
fi
python tools/demo.py "$@"
