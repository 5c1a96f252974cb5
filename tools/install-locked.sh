#!/usr/bin/env bash
# Make a virtual environment exactly match lock files, refusing any file whose sha256 is not
# in the lock: the one install command of `make setup` (tests/tools/test_locks_install.py
# runs this very script against a tampered lock).
#
#   tools/install-locked.sh VENV PYTHON LOCK...
#
# VENV is created with `uv venv` on the interpreter PYTHON (re-created when its version
# differs: a new base image's Python), then `uv pip sync --require-hashes` installs the locks'
# packages and removes anything else. uv never downloads an interpreter here. uv is $UV, or
# the one `make setup` bootstrapped (tools/bootstrap-uv.sh); its download cache is uv's
# default (one cache for every environment and every clone), or $UV_CACHE_DIR.
set -euo pipefail
if (($# < 3)); then
  echo "usage: $0 VENV PYTHON LOCK..." >&2
  exit 2
fi
venv="$1" python="$2"
shift 2
uv="${UV:-.venv-uv/bin/uv}"
export UV_PYTHON_DOWNLOADS=never

if [[ ! -x "$venv/bin/python" ]] || [[ "$("$venv/bin/python" -V 2>&1)" != "$("$python" -V 2>&1)" ]]; then
  "$uv" venv --quiet --clear --python "$python" "$venv"
fi
"$uv" pip sync --quiet --require-hashes --python "$venv/bin/python" "$@"
