# Every target creates the virtualenv and installs the project on first use, so
# `make run` and `make test` work as the first command on a fresh clone.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 5000
WORKERS ?= 3
PYTEST_ARGS ?=

.PHONY: install test lint package-check bench run serve docs clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)  ## create .venv and install the project with its dev extras

test: $(STAMP)  ## run the test suite (fakeredis + SQLite; real services when REDIS_URL / DATABASE_URL are set)
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)  ## ruff + mypy + import-linter (the layers in pyproject.toml)
	$(VENV)/bin/ruff check $(wildcard flask_dataroom_cache example_app tests benchmarks)
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

package-check: $(STAMP)  ## build the sdist and wheel, twine check, install the wheel in a fresh venv (with/without extras)
	PY=$(PY) PYTHON=$(PYTHON) .ci/package-check

bench: $(STAMP)  ## benchmarks: prints a table, writes benchmarks/results/*.json and chart.svg
	$(PY) -m benchmarks

run: $(STAMP)  ## the example app on SQLite + memory cache, seeded, on http://$(HOST):$(PORT)
	$(VENV)/bin/flask --app example_app init-db
	$(VENV)/bin/flask --app example_app seed --base-url http://$(HOST):$(PORT)
	$(VENV)/bin/flask --app example_app run --host $(HOST) --port $(PORT)

serve: $(STAMP)  ## the example app under gunicorn with $(WORKERS) workers (set DATABASE_URL and REDIS_URL); /metrics sums the workers
	$(VENV)/bin/flask --app example_app init-db
	PROMETHEUS_MULTIPROC_DIR=$(CURDIR)/instance/prometheus $(VENV)/bin/gunicorn -c example_app/gunicorn_conf.py --workers $(WORKERS) --bind $(HOST):$(PORT) 'example_app:create_app()'

docs: $(STAMP)  ## build the docs site into site/
	$(VENV)/bin/mkdocs build --strict

clean:  ## remove the virtualenv and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis site build dist *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
