# The two commands of the README. Each one does its own set-up, so both work on a fresh machine.
PYTHON ?= python3
PIP := $(PYTHON) -m pip

.PHONY: install install-dev data demo test lint bench

install:
	$(PIP) install -q -e .

install-dev:
	$(PIP) install -q -e '.[dev]'

# Fashion-MNIST from Debian's package when apt is available (root); otherwise resnetkit
# downloads it with checksums on first use.
data:
	@if [ ! -d /usr/share/datasets/fashion-mnist ] && command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		(apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 || \
		 (apt-get update -q >/dev/null && apt-get install -y -q dataset-fashion-mnist >/dev/null)) || \
		echo "dataset-fashion-mnist not installed; resnetkit will download Fashion-MNIST"; \
	fi

demo: install data
	resnetkit train --config configs/demo.yaml --overwrite

test: install-dev data
	$(PYTHON) -m pytest

lint: install-dev
	ruff check src tests benchmarks && ruff format --check src tests benchmarks

bench: install data
	$(PYTHON) benchmarks/run.py
