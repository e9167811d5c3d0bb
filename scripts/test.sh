#!/usr/bin/env bash
# Install Waymark with its test dependencies and run the whole suite (what CI runs).
# Extra arguments go to pytest. Exit code 5 (no tests collected) counts as a failure.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh test
set +e
.venv/bin/python -m pytest "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "pytest collected no tests: treating as a failure" >&2
  exit 1
fi
exit "$status"
