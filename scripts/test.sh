#!/usr/bin/env bash
# Set up (first run only) and run the whole test suite: unit, integration (real SQLite and
# real PostgreSQL at $RHIZOME_TEST_PG, default postgresql://postgres@127.0.0.1:5432/test).
# With CI=true a missing PostgreSQL fails the run instead of skipping.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh dev      # the app plus pytest, playwright, ruff, mypy, …
# Tests wait on processes, servers and the database more than on the CPU: three pytest
# workers (whole files each) roughly halve the wall time on 2 cores. RHIZOME_TEST_WORKERS=0
# runs them in one process.
workers=${RHIZOME_TEST_WORKERS:-3}
if [ "$workers" = "0" ]; then
  exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
fi
exec .venv/bin/python -m pytest -q -p no:cacheprovider -n "$workers" --dist loadfile "$@"
