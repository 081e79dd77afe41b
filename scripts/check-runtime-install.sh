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
# one command for the four files: the model loads once (each file alone: +10-20 s)
t=$SECONDS
"$work/venv/bin/rhizome" add "${files[@]}" --wait --json > out.json 2> err.txt || status=$?
"$work/venv/bin/python" - out.json "$((SECONDS - t))" "${files[@]}" <<'PY' || status=1
import json
import sys

results = json.load(open(sys.argv[1]))
files = sys.argv[3:]
if len(results) != len(files):
    print(f"FAIL: {len(results)} results for {len(files)} files", file=sys.stderr)
    sys.exit(1)
failed = False
for path, r in zip(files, results, strict=True):
    ok = r.get("status") == "completed" and r.get("document_status") == "ready"
    failed |= not ok
    print(
        f"{'ok' if ok else 'FAIL'}: {path.rsplit('/', 1)[-1]} → job {r.get('status')}, "
        f"document {r.get('document_status')} {r.get('title')!r}"
        + ("" if ok else f": {r.get('error')}"),
        file=sys.stdout if ok else sys.stderr,
    )
print(f"added and processed in {sys.argv[2]} s")
sys.exit(1 if failed else 0)
PY
if [ "$status" -ne 0 ]; then
  grep -v "^WARNING" err.txt | tail -20 >&2 || true
fi
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
