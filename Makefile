# spt: the two commands a newcomer needs are `make quickstart` and `make test` (see README.md).
# Both build what is missing first (scripts/setup.sh is idempotent) and do nothing more when it is there.
SHELL := /bin/bash
TRAIN_PY := .venv/train/bin/python
PYTEST_ARGS ?=
# Test processes: one per core here. Each test file runs whole in one process (module fixtures are built once).
TEST_WORKERS ?= 2

.PHONY: setup quickstart test test-all clean

setup:
	bash scripts/setup.sh all

quickstart: setup
	bash scripts/quickstart.sh

# The default test run: everything but tests marked slow (select those with `make test-all`).
test: setup
	OMP_NUM_THREADS=1 $(TRAIN_PY) -m pytest -m "not slow" -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS)

# Then the slow ones, one at a time: the cluster test times node deaths, which a busy machine would blur.
test-all: test
	OMP_NUM_THREADS=1 $(TRAIN_PY) -m pytest -m slow $(PYTEST_ARGS)

clean:
	rm -rf .venv .spt outputs
