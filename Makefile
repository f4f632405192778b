# The two commands of the README: `make demo` (main job) and `make test` (test suite). Both set themselves up.
VENV ?= .venv
PY := $(VENV)/bin/python
MODEL ?= nextvit_test_tiny
TARGET ?= executorch
OUT ?= out/demo

.PHONY: setup demo test test-slow clean

setup: $(VENV)/.edgevit-installed

$(VENV)/.edgevit-installed: pyproject.toml tools/bootstrap.sh
	bash tools/bootstrap.sh

demo: setup
	$(VENV)/bin/edgevit info --model nextvit_small

test: setup
	bash tools/run_tests.sh

test-slow: setup
	$(PY) -m pytest -m slow

clean:
	rm -rf $(VENV) out .pytest_cache
