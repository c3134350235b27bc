# Two commands for a fresh clone without a ROS install (see README):
#   make demo   -- set up, fetch models and sample faces, run the pipeline
#   make test   -- set up, fetch models and test data, run ruff and the tests
# Every target is idempotent and sets itself up on first use.

# `make test ROS_DISTRO=jazzy` runs everything on the ROS 2 Jazzy wheels in .venv-jazzy;
# the default is Kilted in .venv. Only a value given on the command line counts: a
# ROS_DISTRO exported by a sourced /opt/ros/<distro> says nothing about the wheels.
ifeq ($(origin ROS_DISTRO),command line)
WHEELS := $(ROS_DISTRO)
else
WHEELS := kilted
endif
ifeq ($(WHEELS),kilted)
VENV ?= .venv
else
VENV ?= .venv-$(WHEELS)
endif
export VENV
FER := $(VENV)/bin/fer-ros
LOCAL := source scripts/local_dds.sh &&
SHELL := /bin/bash

.PHONY: setup models testdata test demo bench mutate lint clean

setup:
	@bash scripts/setup_system.sh
	@ROS_DISTRO=$(WHEELS) bash scripts/setup_venv.sh

models: setup
	@$(FER) models fetch

testdata: setup
	@$(FER) data fetch

test: setup models testdata
	@bash scripts/run_tests.sh $(PYTEST_ARGS)

demo: setup models testdata
	@$(LOCAL) $(FER) demo $(DEMO_ARGS)

bench: models testdata
	@FER_ROS_BENCH=1 ROS_DISTRO=$(WHEELS) bash scripts/setup_venv.sh
	@$(LOCAL) $(FER) bench $(BENCH_ARGS)

# Mutation testing (about 25 min on 2 cores): see doc/development.md; report in build/mutate-report.md.
mutate: setup models testdata
	@bash scripts/mutate.sh

lint: setup
	@$(VENV)/bin/ruff check .

clean:
	rm -rf build
