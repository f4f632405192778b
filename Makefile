# The two commands of the README: `make demo` (main job) and `make test` (test suite). Both set themselves up.
VENV ?= .venv
PY := $(VENV)/bin/python
MODEL ?= nextvit_small
TARGET ?= executorch
OUT ?= out/demo

.PHONY: setup demo test test-slow clean

setup: $(VENV)/.edgevit-installed

$(VENV)/.edgevit-installed: pyproject.toml tools/bootstrap.sh
	bash tools/bootstrap.sh

# Until a trained checkpoint ships, the default model has deterministic random weights (--random-init).
demo: setup
	$(VENV)/bin/edgevit convert --model $(MODEL) --random-init --target $(TARGET) --out $(OUT) --overwrite
	$(VENV)/bin/edgevit verify $(OUT)

test: setup
	bash tools/run_tests.sh

test-slow: setup
	$(PY) -m pytest -m slow

clean:
	rm -rf $(VENV) out .pytest_cache
