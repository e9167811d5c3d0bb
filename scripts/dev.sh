#!/usr/bin/env bash
# Install Waymark and run the whole stack locally (embedded PostgreSQL, Temporal dev server + UI,
# worker, API, demo workspace). Extra arguments go to `waymark dev` (e.g. --api-port 8001).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh
exec .venv/bin/waymark dev "$@"
