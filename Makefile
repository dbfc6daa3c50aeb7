# spt: the two commands a newcomer needs are `make quickstart` and `make test` (see README.md).
# Both build what is missing first (scripts/setup.sh is idempotent) and do nothing more when it is there.
SHELL := /bin/bash
TRAIN_PY := .venv/train/bin/python
PYTEST_ARGS ?=

.PHONY: setup quickstart test test-all clean

setup:
	bash scripts/setup.sh all

quickstart: setup
	bash scripts/quickstart.sh

# The default test run: everything but tests marked slow (select those with `make test-all`).
test: setup
	OMP_NUM_THREADS=1 $(TRAIN_PY) -m pytest -m "not slow" $(PYTEST_ARGS)

test-all: setup
	OMP_NUM_THREADS=1 $(TRAIN_PY) -m pytest $(PYTEST_ARGS)

clean:
	rm -rf .venv .spt outputs
