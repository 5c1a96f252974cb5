#!/usr/bin/env bash
# Install uv, the installer of every other environment, into DIR (default .venv-uv) with
# pip's hash checking: the uv version and sha256 hashes are the dev lock's own `uv==` entry,
# so the bootstrap and .venv run the same, verified uv. Needs only python3 with venv.
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${1:-.venv-uv}"
python="${PYTHON:-python3}"
lock=requirements-dev.txt

entry="$(mktemp)"
trap 'rm -f "$entry"' EXIT
# The uv entry: from its `uv==` line through its last `--hash` continuation line.
awk '/^uv==/ {on=1} on && /^ *#/ {exit} on {print} on && !/\\$/ {exit}' "$lock" >"$entry"
if ! grep -q -- '--hash=sha256:' "$entry"; then
  echo "$lock has no hash-pinned uv entry" >&2
  exit 1
fi
version="$(sed -n 's/^uv==\([^ ;]*\).*/\1/p' "$entry")"
if [[ "$("$dir/bin/uv" --version 2>/dev/null)" == "uv ${version} "* ]]; then
  touch "$dir/bin/uv"  # already this version: keep make's stamp fresh
  exit 0
fi
rm -rf "$dir"
"$python" -m venv "$dir"
"$dir/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps \
  --require-hashes --only-binary :all: -r "$entry"
"$dir/bin/uv" --version
