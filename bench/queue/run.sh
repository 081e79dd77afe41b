#!/usr/bin/env bash
# Queue benchmark: rhizome (PostgreSQL), rhizome (SQLite), pgqueuer and Procrastinate, in one run.
#
#   bench/queue/run.sh                 # benchmark the working tree (editable install)
#   bench/queue/run.sh --rev HEAD      # benchmark a git revision (git archive of its src/)
#   bench/queue/run.sh --systems rhizome-pg --jobs 20000 ...   # options of bench.py
#
# Needs PostgreSQL at 127.0.0.1:5432 (user postgres, admin database `test`; override with
# --admin-url). Creates and drops its own databases. pgqueuer and Procrastinate
# (bench/queue/requirements.txt) live only in bench/.venv (git-ignored), together with an
# editable install of this project.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
VENV="$ROOT/bench/.venv"
PY="$VENV/bin/python"

quiet_pip() { "$VENV/bin/pip" "$@" 2>&1 | grep -v -e "^WARNING: Location" -e "BuildBackendWarning" -e "return '" || true; }

if [ ! -x "$PY" ]; then
    echo "creating $VENV"
    python3 -m venv "$VENV"
    quiet_pip install -q -U pip
fi
REQS="$ROOT/bench/queue/requirements.txt"
if ! "$PY" -c "import procrastinate, pgqueuer, asyncpg, psycopg" 2>/dev/null; then
    echo "installing the other queues ($REQS) into $VENV"
    quiet_pip install -q -r "$REQS"
fi
# (Re)install the project when its dependencies changed.
STAMP="$VENV/.rhizome-pyproject.sha256"
WANT="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ] || ! "$PY" -c "import rhizome" 2>/dev/null; then
    echo "installing rhizome (editable) into $VENV"
    quiet_pip install -q -e "$ROOT"
    echo "$WANT" > "$STAMP"
fi

ARGS=()
SNAP=""
cleanup() { if [ -n "$SNAP" ]; then rm -rf "$SNAP"; fi; }
trap cleanup EXIT
while [ $# -gt 0 ]; do
    case "$1" in
        --rev)
            REV="$(git rev-parse --short "$2")"
            SNAP="$(mktemp -d /tmp/rhizome-bench-src-XXXXXX)"
            git archive "$REV" src | tar -x -C "$SNAP"
            ARGS+=(--rhizome-src "$SNAP/src" --rhizome-rev "$REV")
            shift 2
            ;;
        *)
            ARGS+=("$1")
            shift
            ;;
    esac
done

"$PY" "$ROOT/bench/queue/bench.py" "${ARGS[@]+"${ARGS[@]}"}"
