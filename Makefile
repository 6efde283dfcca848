# Entry points of the project. `make test` is the README's test command.
# VENV can be overridden: `make test VENV=/tmp/venv`.
VENV ?= .venv
PYTHON := $(VENV)/bin/python
# Narrow the test run: `make test TESTS=test/ros/test_messages.py`.
TESTS ?= test

.PHONY: setup install msgs test lint train

## setup: install everything (apt, venv, deps, messages), then run the main job `safevla train`
setup:
	VENV=$(VENV) bash scripts/setup.sh

## install: the same without running the main job
install:
	VENV=$(VENV) bash scripts/setup.sh --no-run

## msgs: (re)generate the ROS 2 interfaces into the venv
msgs:
	VENV=$(VENV) bash scripts/build_msgs.sh

## test: the test suite
test:
	$(PYTHON) -m pytest -q $(TESTS)

## lint: ruff rules and formatting, mypy strict on safevla_core (pyproject.toml)
lint:
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy safevla_core

## train: the main job with the default config
train:
	MUJOCO_GL=$${MUJOCO_GL:-egl} HF_HUB_OFFLINE=1 $(VENV)/bin/safevla train
