# ringfence: set-up, lint, tests, demo and benchmarks.
#
# On a fresh Debian 12 machine, as root, two commands:
#   make demo    install what is needed, run a hostile program confined, show what was enforced
#   make test    install what is needed, lint, run the whole suite as an unprivileged user and as root
#
# Everything installs into /opt/ringfence-ci (RF_CI_DIR) and runs as the user rftest
# (RF_TEST_USER); see scripts/setup.sh. Both targets are idempotent and fast the second time.
# CI runs `bash .ci/run`, which is `make test`.

SHELL := /bin/bash
export RF_CI_DIR ?= /opt/ringfence-ci
export RF_TEST_USER ?= rftest

.PHONY: help setup lint test demo bench clean

help:
	@echo "make demo    set up, then run a confined program as $(RF_TEST_USER) and show what was enforced"
	@echo "make test    set up, lint, run the whole suite as $(RF_TEST_USER) and as root (PYTEST_ARGS=...)"
	@echo "make lint    ruff check, ruff format --check, mypy --strict ringfence"
	@echo "make bench   run benchmarks/*.py as $(RF_TEST_USER) (BENCH=\"startup vault\" BENCH_ARGS=...)"
	@echo "make setup   Debian packages, devices, user $(RF_TEST_USER), venv in $(RF_CI_DIR) (root)"
	@echo "make clean   remove $(RF_CI_DIR)"

setup:
	@bash scripts/setup.sh

lint: setup
	@bash scripts/lint.sh

test: setup
	@bash scripts/test.sh

demo: setup
	@bash scripts/demo.sh

bench: setup
	@bash scripts/bench.sh

clean:
	rm -rf -- "$(RF_CI_DIR)"
