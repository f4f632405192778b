# The two commands of the README: `make demo` (main job) and `make test` (test suite). Both set themselves up.
VENV ?= .venv
PY := $(VENV)/bin/python
MODEL ?= nextvit_digits
TARGET ?= executorch
OUT ?= out/demo

.PHONY: setup demo test test-slow test-durations clean

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

# The default run: every README combination on the shipped reference model and the tiny config, on every core.
test: setup
	bash tools/run_tests.sh

# The full-size tier (Next-ViT-S depth or wider, training); CI runs it after `make test`.
test-slow: setup
	bash tools/run_tests.sh -m slow

# Re-measure the default run and store each test's duration as the baseline the run's summary compares against.
test-durations: setup
	EDGEVIT_WRITE_DURATIONS=1 bash tools/run_tests.sh

clean:
	rm -rf $(VENV) out .pytest_cache
