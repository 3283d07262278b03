# canary-operator: everything runs from a local virtualenv; `make deps` installs what is missing.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=
# The suite runs in parallel processes, a test file to each (a module's tests share its fixtures); the
# scenarios mostly wait on the operator, so 3 processes keep 2 cores busy. PYTEST_WORKERS=0: in this process.
PYTEST_WORKERS ?= 3
XDIST := $(if $(filter 0,$(PYTEST_WORKERS)),,-n $(PYTEST_WORKERS) --dist loadfile)

.PHONY: deps prometheus test lint unit demo bench-restore bench-judge bench-hostile bench-scale crds image e2e clean

deps: $(VENV)/.installed prometheus

$(VENV)/.installed: pyproject.toml bench/pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]' -e ./bench
	touch $@

# Real Prometheus and promtool, from Debian's archive (the tests and the demo run them on loopback).
prometheus:
	@if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null; then \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null; \
	fi

lint: deps
	$(VENV)/bin/ruff check operator tests bench
	$(VENV)/bin/ruff format --check operator tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

test: lint
	$(PY) -m pytest $(XDIST) $(PYTEST_ARGS)

# The fast tier: everything but what starts the operator as a process or runs a long scenario.
unit: deps
	$(PY) -m pytest -m "not slow" $(XDIST) $(PYTEST_ARGS)

# make demo KEEP=1 keeps the cluster up afterwards and prints the KUBECONFIG line for kubectl and the plugin.
demo: deps
	$(PY) -m canary_bench.demo $(if $(KEEP),--keep)

bench-restore: deps
	$(PY) -m canary_bench.benchmarks.restore --runs 3
	$(PY) -m canary_bench.benchmarks.restore --runs 3 --production

bench-judge: deps
	$(PY) -m canary_bench.benchmarks.judge

bench-hostile: deps
	$(PY) -m canary_bench.benchmarks.hostile

# SIZES="50 200" to pick the numbers of rollouts (default 50 200 500); figures in docs/scale.md.
bench-scale: deps
	$(PY) -m canary_bench.benchmarks.scale $(SIZES)

# The operator's image; PYTHON_IMAGE=<image> replaces the base (docs/release.md).
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
image:
	docker build -t canary-operator:$(VERSION) $(if $(PYTHON_IMAGE),--build-arg PYTHON_IMAGE=$(PYTHON_IMAGE)) .

# End-to-end on kind (opt-in; needs docker, kind's node image, kubectl and helm): see README.
e2e: deps
	$(VENV)/bin/pip install --quiet -e '.[e2e]'
	$(PY) -m pytest --only-e2e tests/e2e $(PYTEST_ARGS)

crds: deps
	$(PY) -m canary_operator.crds > crds/canaryrollouts.yaml
	cp crds/canaryrollouts.yaml charts/canary-operator/crds/canaryrollouts.yaml

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
