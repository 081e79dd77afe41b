#!/usr/bin/env bash
# Set up (first run only) and run Rhizome on the embedded default: SQLite in
# ./.rhizome/rhizome.db and storage in ./.rhizome/storage. Extra arguments go to `rhizome`
# (default: `worker`).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
.venv/bin/rhizome db upgrade
if [ $# -eq 0 ]; then set -- worker; fi
exec .venv/bin/rhizome "$@"
