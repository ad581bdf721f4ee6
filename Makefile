# mcp-bastion: `make run` starts the quickstart, `make test` runs every test. Both install first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test test-fast fuzz lint format bench clean screenshots

# Test processes (pytest-xdist): most of a test's time is spent waiting on servers, databases
# and subprocesses, so three keep two cores busy. TEST_WORKERS=0 runs everything in one.
TEST_WORKERS ?= 3

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

# make run PORT=9000 DATA=bastion-data-9000: other ports (PORT, PORT+1, PORT+2), another setup.
run: install
	$(BIN)/bastion quickstart $(if $(PORT),--port $(PORT)) $(if $(DATA),--data-dir $(DATA))

test: install
	bash scripts/test-setup.sh
	. .cache/test-env && $(BIN)/pytest -n $(TEST_WORKERS) $(PYTEST_ARGS)

# The fuzzers alone, ten times deeper than in `make test` (20,000 cases per endpoint group,
# a fresh random seed each run): BASTION_FUZZ_PROFILE=deep.
fuzz: install
	bash scripts/test-setup.sh
	. .cache/test-env && BASTION_FUZZ_PROFILE=deep $(BIN)/pytest tests/fuzz $(PYTEST_ARGS)

test-fast: install
	$(BIN)/pytest -n $(TEST_WORKERS) -m "not browser and not conformance" $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff format --check src tests
	$(BIN)/ruff check src tests
	$(BIN)/mypy

format: install
	$(BIN)/ruff format src tests
	$(BIN)/ruff check --fix src tests

bench: install
	bash scripts/test-setup.sh
	. .cache/test-env && $(BIN)/python -m benchmarks $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .cache .mypy_cache .ruff_cache .pytest_cache

# docs/screenshots/*.png, shown in docs/pages.md and docs/console.md: every page at desktop and
# phone width.
screenshots: install
	$(BIN)/python scripts/screenshots.py
	$(BIN)/python scripts/console_screenshots.py
