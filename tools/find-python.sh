#!/usr/bin/env bash
# Print the path of a working Python X.Y interpreter (the one the container images use), or
# nothing. Looks on PATH, then in pyenv's versions, then in the usual prefixes.
set -u
version="$1"
candidates=("python${version}")
for dir in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"${version}"*/bin /usr/local/bin /usr/bin; do
  candidates+=("${dir}/python${version}")
done
for candidate in "${candidates[@]}"; do
  if "${candidate}" -c 'import sys, venv, ensurepip; sys.exit(0)' >/dev/null 2>&1; then
    command -v "${candidate}" 2>/dev/null || echo "${candidate}"
    exit 0
  fi
done
exit 0
