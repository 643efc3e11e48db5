#!/usr/bin/env bash
# Run mmtkd's test-suite on the CPU; installs what is missing first (see tools/install.sh).
# Extra arguments go to pytest, e.g. `bash tools/run_tests.sh -k losses`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install.sh
export CUDA_VISIBLE_DEVICES=""
set +e
python -m pytest tests -q "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "pytest collected no tests" >&2
fi
exit "$status"
