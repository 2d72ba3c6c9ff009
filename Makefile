# `make demo` and `make test` both create .venv when missing and install siamcl into it.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.siamcl-installed
# the Python of the CUDA machine benchmarks/gpu_energy.sh runs on
GPU_PYTHON_VERSION ?= 3.12

.PHONY: demo test lint bench clean gpu-wheels

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/siamcl bench quick

# Tests run on one torch thread each (tests/conftest.py), so one pytest worker a core
# (pytest-xdist) uses the machine: on 2 cores the suite took 0.6-0.7x the time of one process.
# The cores this process may run on (nproc), at most 8: xdist's own "auto" counts the host's
# physical cores, which a container or a CPU affinity may not grant.
TEST_WORKERS ?= $(shell n=$$(nproc 2>/dev/null || echo 1); echo $$(( n < 8 ? n : 8 )))

test: $(STAMP)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist worksteal

lint: $(STAMP)
	$(BIN)/ruff check siamcl tests benchmarks

# wheels benchmarks/gpu_energy.sh installs on a CUDA machine with no package index
gpu-wheels:
	$(PYTHON) -m pip download --quiet --no-deps --only-binary=:all: --python-version $(GPU_PYTHON_VERSION) \
		--implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
		--platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
		-d .whl -r benchmarks/gpu_wheels.txt

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
