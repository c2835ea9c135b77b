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
	@echo "make test    set up, lint, run the whole suite as $(RF_TEST_USER) and as root (TESTS=tests/unit PYTEST_ARGS=-x)"
	@echo "make lint    ruff check, ruff format --check, mypy --strict ringfence"
	@echo "make bench   run benchmarks/*.py as $(RF_TEST_USER) (BENCH=\"startup vault\" BENCH_ARGS=...)"
	@echo "make setup   Debian packages, devices, user $(RF_TEST_USER), venv in $(RF_CI_DIR) (root)"
	@echo "make clean   remove $(RF_CI_DIR)"

# Each target runs scripts/setup.sh first (fast when nothing changed), under a lock so that two
# runs on one machine do not replace the shared copy of the tree under each other.
setup:
	@bash scripts/locked.sh

lint:
	@bash scripts/locked.sh lint.sh

test:
	@bash scripts/locked.sh test.sh

demo:
	@bash scripts/locked.sh demo.sh

bench:
	@bash scripts/locked.sh bench.sh

clean:
	@bash -c 'exec 9>>"$(RF_CI_DIR).lock" && flock 9 && rm -rf -- "$(RF_CI_DIR)"' && echo "removed $(RF_CI_DIR)"
