# llmlab — two commands on a fresh machine:
#   make demo   installs everything into .venv and runs the b2b-saas scenario simulation (offline)
#   make test   installs everything (Python packages and the system packages the tests need) and runs the tests

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.llmlab-installed

.PHONY: demo walkthrough test test-fast system-deps benchmarks clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --progress-bar off -e ".[all]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/llmlab simulate --scenario b2b-saas

walkthrough: $(STAMP)
	$(VENV)/bin/llmlab demo

system-deps:
	@bash scripts/install-system-deps.sh

test: $(STAMP) system-deps
	$(PY) -m pytest -q

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow and not browser"

benchmarks: $(STAMP)
	$(PY) benchmarks/gateway_overhead.py --json
	$(PY) benchmarks/semantic_cache.py --json
	$(PY) benchmarks/sim_throughput.py --json

clean:
	rm -rf $(VENV) build *.egg-info
