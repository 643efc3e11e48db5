#!/usr/bin/env bash
# The lint of .pre-commit-config.yaml, without pre-commit: isort, yapf and flake8 with the settings
# of setup.cfg. Installs the pinned linters into the active interpreter when they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
$PY -m pip --disable-pip-version-check install -q 'isort==5.13.2' 'yapf==0.43.0' 'flake8==7.1.1'
$PY -m isort --check-only --diff .
# yapf exits 1 when it would reformat: the diff is shown below, not swallowed by `set -e`
diff=$($PY -m yapf --diff -r mmtkd tests tools setup.py || true)
if [ -n "$diff" ]; then
  echo "$diff"
  echo "yapf would reformat the files above: python -m yapf -i -r mmtkd tests tools setup.py" >&2
  exit 1
fi
$PY -m flake8 .
echo "lint: isort, yapf and flake8 pass"
