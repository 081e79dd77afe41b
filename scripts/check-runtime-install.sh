#!/usr/bin/env bash
# CI check: a plain `pip install .` gives a working app. In a fresh venv, with the machine's
# own pip (not upgraded) and no extras, install the project, then `rhizome add --wait` a
# PDF, an EPUB, an HTML page and a Markdown file from the corpus (real extraction, the real
# local embedding model); each document and its jobs must complete.
#   scripts/check-runtime-install.sh [CORPUS_DIR]      (default ../shared/corpus)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
PY=${PYTHON:-python3}
corpus=$(cd "${1:-${RHIZOME_CORPUS:-../shared/corpus}}" && pwd)
files=(
  "$corpus/pdf/pdflatex-4-pages.pdf"
  "$corpus/epub/wasteland.epub"
  "$corpus/html/gregoryszorc.com.python3.html"
  "$corpus/README.md"
)
work=$(mktemp -d "${TMPDIR:-/tmp}/rhizome-runtime.XXXXXX")
trap 'rm -rf "$work"' EXIT

start=$SECONDS
"$PY" -m venv "$work/venv"
# build from a copy, so the checkout gets no build/ folder and no stray egg-info
mkdir "$work/src"
tar -C "$repo" --exclude='__pycache__' --exclude='*.egg-info' -cf - pyproject.toml README.md src \
  | tar -C "$work/src" -xf -
if ! "$work/venv/bin/python" -m pip install --disable-pip-version-check "$work/src" \
  > "$work/pip.log" 2>&1; then
  grep -v "^WARNING: Location" "$work/pip.log" | tail -40 >&2
  echo "FAIL: pip install . (the machine's own pip, no extras) did not install" >&2
  exit 1
fi
echo "runtime install: $((SECONDS - start)) s, $(du -sh "$work/venv" | cut -f1)"
for tool in pytest playwright schemathesis weed ruff mypy; do
  if [ -e "$work/venv/bin/$tool" ]; then
    echo "FAIL: the runtime install brought the dev tool $tool" >&2
    exit 1
  fi
done

# a clean environment: no RHIZOME_* settings from outside, no rhizome.toml, a fresh
# database and storage folder
mkdir "$work/run"
cd "$work/run"
for name in $(compgen -e | grep -i '^RHIZOME_' || true); do unset "$name"; done
export RHIZOME_DATABASE_URL="sqlite:///$work/run/rhizome.db"
export RHIZOME_STORAGE_URL="$work/run/storage"
export RHIZOME_LOG_LEVEL=WARNING
status=0
for file in "${files[@]}"; do
  t=$SECONDS
  if ! "$work/venv/bin/rhizome" add "$file" --wait --json > out.json 2> err.txt; then
    echo "FAIL: rhizome add $file --wait exited with an error" >&2
    cat out.json err.txt >&2
    status=1
    continue
  fi
  if ! "$work/venv/bin/python" - out.json "$file" "$((SECONDS - t))" <<'PY'
import json
import sys

result = json.load(open(sys.argv[1]))
ok = result.get("status") == "completed" and result.get("document_status") == "ready"
line = (
    f"{'ok' if ok else 'FAIL'}: {sys.argv[2].rsplit('/', 1)[-1]} → job {result.get('status')},"
    f" document {result.get('document_status')} {result.get('title')!r} ({sys.argv[3]} s)"
)
print(line if ok else f"{line}\n{json.dumps(result, indent=2)}", file=sys.stdout if ok else sys.stderr)
sys.exit(0 if ok else 1)
PY
  then
    status=1
  fi
done
"$work/venv/bin/rhizome" jobs list --json > jobs.json
"$work/venv/bin/python" - jobs.json <<'PY' || status=1
import json
import sys

jobs = json.load(open(sys.argv[1]))
bad = [(j["job_type"], j["status"]) for j in jobs if j["status"] != "completed"]
print(f"{len(jobs)} jobs, {len(jobs) - len(bad)} completed")
if bad:
    print(f"FAIL: jobs not completed: {bad}", file=sys.stderr)
    sys.exit(1)
PY
if [ "$status" -ne 0 ]; then
  echo "runtime install check FAILED" >&2
  exit 1
fi
echo "runtime install check passed in $((SECONDS - start)) s"
