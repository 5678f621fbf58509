# The README's two commands: `make demo` (the whole pipeline on this machine) and `make test`.
# Both set up everything they need: the virtualenv, the Python dependencies (pinned by
# constraints.txt), and Kafka and Elasticsearch from Maven Central (cached outside the repo).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: demo test lint native services-up services-down lock clean

$(BIN)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade "pip>=24"
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	touch $@

# The detector's hot modules compiled with mypyc (socpipe/native.py): built when missing or older
# than their source, else nothing to do. Without a C compiler the Python source runs, slower.
native: $(BIN)/.installed
	$(BIN)/python -m socpipe.native ensure

demo: native
	$(BIN)/socpipe demo

test: native
	$(BIN)/socpipe services up
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/pytest $(PYTEST_ARGS)

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

services-up: $(BIN)/.installed
	$(BIN)/socpipe services up

services-down: $(BIN)/.installed
	$(BIN)/socpipe services down

# Re-pin every dependency to what resolves today; commit the result after `make test` passes.
lock:
	rm -rf .lock-venv
	$(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet --upgrade "pip>=24"
	.lock-venv/bin/pip install --quiet -e '.[dev]'
	.lock-venv/bin/pip freeze --exclude-editable | grep -v '^socpipe' > constraints.txt
	rm -rf .lock-venv

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache *.egg-info
