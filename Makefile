# The two commands of the README. Each does its own set-up, so both work on a fresh machine,
# with or without root, including Debian/Ubuntu whose system Python is "externally managed"
# (PEP 668): everything is installed into a virtual environment inside the project, .venv/.
PYTHON ?= python3
VENV ?= .venv
VPY := $(VENV)/bin/python
# pip's own progress and the "running as root" advice are noise here.
PIP := PIP_ROOT_USER_ACTION=ignore $(VPY) -m pip --disable-pip-version-check

.PHONY: venv install install-dev data demo test lint bench clean-venv

# The environment is remade only when missing; `make clean-venv` removes it.
$(VPY):
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 10))' || \
		{ echo "resnetkit needs Python 3.10 or newer; set PYTHON=/path/to/python3.x" >&2; exit 2; }
	@$(PYTHON) -m venv $(VENV) 2>/dev/null || \
		{ rm -rf $(VENV); echo "cannot create $(VENV): Python's venv module is missing; on Debian/Ubuntu install it with: sudo apt-get install python3-venv" >&2; exit 2; }
	@echo "created the virtual environment $(VENV)/"

venv: $(VPY)

install: venv
	$(PIP) install -q -e .

install-dev: venv
	$(PIP) install -q -e '.[dev]'

# Fashion-MNIST from Debian's package when running as root with apt; otherwise the demo's
# --download fetches it (checksums verified) into ~/.cache/resnetkit/datasets.
data:
	@if [ ! -d /usr/share/datasets/fashion-mnist ] && command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		(apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 || \
		 (apt-get update -q >/dev/null && apt-get install -y -q dataset-fashion-mnist >/dev/null)) || \
		echo "dataset-fashion-mnist not installed; resnetkit will download Fashion-MNIST"; \
	fi

demo: install data
	$(VENV)/bin/resnetkit train --config configs/demo.yaml --download --overwrite
	@echo
	@echo "resnetkit is installed in $(VENV)/: run '. $(VENV)/bin/activate' to use the resnetkit command"

test: install-dev data
	$(VPY) -m pytest

lint: install-dev
	$(VENV)/bin/ruff check src tests benchmarks && $(VENV)/bin/ruff format --check src tests benchmarks

bench: install data
	$(VPY) benchmarks/run.py

clean-venv:
	rm -rf $(VENV)
