# One command each: `make demo` runs the module ablation on the embedded synthetic benchmark,
# `make test` runs the test suite, `make lint` ruff and mypy. Each creates .venv and install what is missing.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.sspa-installed
DEMO_OUT ?= runs/demo

.PHONY: demo test lint test-cuda bench install browser clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/sspa-ray ablate --target synthetic --out $(DEMO_OUT) \
		$$(test -d $(DEMO_OUT) && echo --resume)

# Two pytest-xdist workers: one worker keeps 2 cores about 55% busy, as the tests wait on Ray and on
# the processes they start. --dist loadgroup keeps each module whose tests share module-scoped runs
# on one worker (its pytestmark names the group; pytest below 9.2, see pyproject.toml); the other
# tests spread one by one, the slow ones first (tests/conftest.py).
TEST_WORKERS ?= 2

# compileall first: the suite starts hundreds of Python processes, and where PYTHONDONTWRITEBYTECODE is
# set (as on this development machine) each would compile sspa_ray's sources again, about 0.1 CPU-s apiece.
test: $(STAMP)
	$(BIN)/python -m compileall -q sspa_ray cli
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadgroup

# ruff (rules E, F, I, B, UP) over the code and tests; mypy over the engine, config.py, defaults.py and registry.py (pyproject.toml).
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

# Debian's chromium, which the test of report.html opens headless (that test skips without it).
browser:
	command -v chromium >/dev/null || { $$(test "$$(id -u)" = 0 || echo sudo) apt-get update && \
		$$(test "$$(id -u)" = 0 || echo sudo) apt-get install -y chromium; }

# The CUDA paths on a GPU (skipped by `make test`, which CI runs without one).
test-cuda: $(STAMP)
	$(BIN)/python -m pytest -q -rs tests/test_cuda.py

bench: $(STAMP)
	$(BIN)/python -m benchmarks.pam
	$(BIN)/python -m benchmarks.engine_step
	$(BIN)/python -m benchmarks.data
	$(BIN)/python -m benchmarks.orchestration
	$(BIN)/python -m benchmarks.profile_pa
	$(BIN)/python -m benchmarks.epoch_overhead
	$(BIN)/python -m benchmarks.gpu_throughput

clean:
	rm -rf $(VENV) .pytest_cache
