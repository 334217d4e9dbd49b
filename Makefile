# Provisioning hub: run `make help` for the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# Python 3.13 (the Lambda runtime): pyenv's when present, else python3.13 on PATH.
PYTHON313 ?= $(shell command -v $(HOME)/.pyenv/versions/3.13.0/bin/python3.13 2>/dev/null || command -v python3.13)
VENV := .venv
SAM_VENV := .venv-sam
CHECKOV_VENV := .venv-checkov
PY := $(VENV)/bin/python
SAM := PATH="$(CURDIR)/$(SAM_VENV)/bin:$$PATH" SAM_CLI_TELEMETRY=0 $(SAM_VENV)/bin/sam
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: help venv sam-venv checkov-venv lint format security validate build deploy-check test test-fast demo local bench clean lock

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*## "}{printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}'

$(VENV)/.installed: requirements-dev.txt pyproject.toml
	@test -n "$(PYTHON313)" || { echo "python3.13 not found (install it, e.g. pyenv install 3.13.0)"; exit 1; }
	test -x $(PY) || $(PYTHON313) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements-dev.txt
	$(PY) -m pip install -q --no-deps -e .
	@touch $@

$(SAM_VENV)/.installed: requirements-sam.lock
	@test -n "$(PYTHON313)" || { echo "python3.13 not found"; exit 1; }
	test -x $(SAM_VENV)/bin/python || $(PYTHON313) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/python -m pip install -q -r requirements-sam.lock
	@touch $@

$(CHECKOV_VENV)/.installed: requirements-checkov.lock
	@test -n "$(PYTHON313)" || { echo "python3.13 not found"; exit 1; }
	test -x $(CHECKOV_VENV)/bin/python || $(PYTHON313) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install -q -r requirements-checkov.lock
	@touch $@

venv: $(VENV)/.installed ## Create .venv (runtime + dev tools, pinned)

sam-venv: $(SAM_VENV)/.installed ## Create .venv-sam (SAM CLI, pinned, kept apart)

checkov-venv: $(CHECKOV_VENV)/.installed ## Create .venv-checkov (checkov, pinned, kept apart)

lint: venv ## ruff (lint + format check) and mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: venv ## Format the code with ruff
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

security: checkov-venv ## checkov on template.yaml (skipped checks are justified in the template)
	$(CHECKOV_VENV)/bin/checkov -f template.yaml --framework cloudformation --compact --quiet --skip-download

validate: sam-venv ## sam validate --lint
	$(SAM) validate --lint

build: sam-venv ## sam build (no Docker: uses python3.13 from .venv-sam)
	$(SAM) build

deploy-check: venv sam-venv ## Deploy rehearsal on moto: sam build + package, cfn-lint, the stack via its CloudFormation
	$(VENV)/bin/provisioner deploy-check

test: venv sam-venv lint security deploy-check ## Lint, checkov, deploy rehearsal, then every test (the backlog drain runs beside the rest)
	@rm -f .backlog-tests.log; \
	$(VENV)/bin/pytest -m backlog -p no:cacheprovider > .backlog-tests.log 2>&1 & backlog=$$!; \
	$(VENV)/bin/pytest -m "not backlog"; main=$$?; \
	wait $$backlog; drained=$$?; \
	echo "---- backlog tests (run beside the others) ----"; cat .backlog-tests.log; rm -f .backlog-tests.log; \
	test $$main -eq 0 -a $$drained -eq 0

test-fast: venv sam-venv ## Unit and integration tests only (no sam build, no backlog drain)
	$(VENV)/bin/pytest -m "not slow and not backlog"

demo: venv sam-venv ## Run the hub end to end on a throwaway local stack
	$(VENV)/bin/provisioner demo

bench: venv ## Benchmarks against the local stack, limits beside measurements (not part of make test)
	$(PY) bench/run.py $(BENCH_ARGS)

local: venv sam-venv env.json ## Start the local stack (moto + provider sandbox) in the foreground
	$(VENV)/bin/provisioner local up

env.json: template.yaml venv ## env.json for sam local invoke|start-api, generated from template.yaml
	$(VENV)/bin/provisioner local env-json > $@.tmp && mv $@.tmp $@

lock: ## Re-pin requirements-dev.txt from the current .venv
	(echo "# Pinned development and test environment (make venv). Regenerate: make lock"; \
	 $(VENV)/bin/pip freeze --exclude-editable | grep -vi '^provisioner') > requirements-dev.txt

clean: ## Remove build output and caches
	rm -rf .aws-sam .deploy-check .pytest_cache .mypy_cache .ruff_cache .local build *.egg-info
