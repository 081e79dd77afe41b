#!/usr/bin/env bash
# Create .venv and install the project with its pinned dependencies, idempotently (again
# only when pyproject.toml changed):
#   scripts/setup.sh        the app only (what ./scripts/run.sh needs; no dev tools)
#   scripts/setup.sh dev    the app plus the dev extras: pytest, playwright, ruff, mypy, …
# Each kind has its own stamp, so the run command never pulls the dev tools; after a
# `setup.sh dev` the app is installed too, and `setup.sh` has nothing left to add.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
kind=${1:-app}
case "$kind" in
  app) target=. ;;
  dev) target='.[dev]' ;;
  *) echo "usage: $0 [app|dev]" >&2; exit 2 ;;
esac
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.rhizome-installed-$kind
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  # the venv's own pip, not upgraded: the dependencies are spelled so that it resolves them
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -e "$target"
  echo "$want" > "$stamp"
fi
