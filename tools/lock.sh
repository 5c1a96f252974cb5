#!/usr/bin/env bash
# Regenerate every lock file (requirements*.txt, services/*/requirements.txt) from its
# human-edited *.in, with sha256 hashes, in one command: `make lock` (or tools/lock.sh).
#
# Each lock is one universal resolution (valid on Linux x86_64/arm64 and macOS, Python 3.11
# and up: the developers' 3.11 and the images' 3.13 on Graviton), compiled by the uv that the
# dev lock pins. Order matters: a lock compiled later takes the earlier ones as constraints,
# so a package shared by the images, the dev environment and .venv-image has one version
# (tests/tools/test_locks.py checks it). checkov's environment is separate on purpose.
#
# Existing pins are kept (uv prefers the versions already in a lock); pass --upgrade, or
# --upgrade-package NAME, to move them: `make lock LOCK_ARGS=--upgrade`. The header of each
# lock records the command (Renovate's pip-compile manager reads it). Base images are pinned
# separately: `.venv/bin/python tools/refresh_base_images.py`.
set -euo pipefail
cd "$(dirname "$0")/.."

uv="${UV:-.venv/bin/uv}"
# Locks must not depend on a developer's uv.toml (index, resolution mode) nor fetch Pythons.
export UV_NO_CONFIG=1 UV_PYTHON_DOWNLOADS=never

compile() {
  "$uv" pip compile --quiet --universal --generate-hashes --python-version 3.11 "$@"
}

# One line per lock: the lock, its input, then the locks it is constrained by (in order).
compile "$@" --output-file services/binder/requirements.txt services/binder/requirements.in
compile "$@" --constraint services/binder/requirements.txt \
  --output-file services/agent/requirements.txt services/agent/requirements.in
compile "$@" --constraint services/binder/requirements.txt --constraint services/agent/requirements.txt \
  --output-file requirements.txt requirements.in
compile "$@" --constraint services/binder/requirements.txt --constraint services/agent/requirements.txt \
  --constraint requirements.txt --output-file requirements-dev.txt requirements-dev.in
compile "$@" --constraint requirements-dev.txt \
  --output-file requirements-image.txt requirements-image.in
compile "$@" --output-file requirements-checkov.txt requirements-checkov.in
