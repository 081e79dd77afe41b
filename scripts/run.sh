#!/usr/bin/env bash
# Set up (first run only) and run Rhizome on the embedded default: SQLite in
# ./.rhizome/rhizome.db, files in ./.rhizome/storage, the web UI + API + a worker in one
# process at http://127.0.0.1:8000. Extra arguments go to `rhizome serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh          # the app only, no dev tools
exec .venv/bin/rhizome serve "$@"
