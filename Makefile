# The two commands of the README: `make demo` (main job) and `make test` (test suite). Both set themselves up.
VENV ?= .venv
PY := $(VENV)/bin/python
MODEL ?= nextvit_digits
TARGET ?= executorch
OUT ?= out/demo

.PHONY: setup demo test test-slow clean

setup: $(VENV)/.edgevit-installed

$(VENV)/.edgevit-installed: pyproject.toml tools/bootstrap.sh
	bash tools/bootstrap.sh

# The default model is the trained reference Next-ViT shipped in edgevit/assets (handwritten digits, 64x64);
# `make demo MODEL=nextvit_small WEIGHTS=--random-init` runs the full-size network on random weights.
WEIGHTS ?=
PRECISION ?= fp32
demo: setup
	$(VENV)/bin/edgevit convert --model $(MODEL) $(WEIGHTS) --target $(TARGET) --precision $(PRECISION) --out $(OUT) --overwrite
	$(VENV)/bin/edgevit verify $(OUT)

test: setup
	bash tools/run_tests.sh

test-slow: setup
	$(PY) -m pytest -m slow

clean:
	rm -rf $(VENV) out .pytest_cache
