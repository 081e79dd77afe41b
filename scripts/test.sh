#!/usr/bin/env bash
# Set up (first run only) and run the whole test suite: unit, integration (real SQLite and
# real PostgreSQL at $RHIZOME_TEST_PG, default postgresql://postgres@127.0.0.1:5432/test).
# With CI=true a missing PostgreSQL fails the run instead of skipping.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh dev      # the app plus pytest, playwright, ruff, mypy, …
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
