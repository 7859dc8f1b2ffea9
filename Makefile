# HKMS — the two commands of the README:
#   make run    set up (venv, databases, root key) and serve on http://127.0.0.1:8000
#   make test   set up the same way and run lint, types and the whole test suite
# HKMS_TEST_POSTGRES=1 make test also runs the suite on PostgreSQL (PG* variables).

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000
WORKERS ?= 2

.PHONY: run test lint typecheck pytest setup system-packages migrate bootstrap bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

system-packages:
	@bash scripts/system-packages.sh

setup: $(STAMP)

migrate: $(STAMP)
	$(BIN)/python manage.py migrate --noinput --database default
	$(BIN)/python manage.py migrate --noinput --database kek
	$(BIN)/python manage.py migrate --noinput --database dek
	$(BIN)/python manage.py createcachetable --database default  # HKMS_CACHE_URL=db:// (a no-op otherwise)

bootstrap: migrate
	$(BIN)/python manage.py init_hierarchy
	$(BIN)/python manage.py collectstatic --noinput --verbosity 0
	$(BIN)/python manage.py bootstrap_admin

# The server is scripts/serve.sh: granian, WORKERS processes x THREADS Python threads (default
# 2 x 8), HTTP parsed in Rust so that slow clients hold no Python thread, and a client that has
# not sent its headers within 10 s is disconnected.  docs/performance.md has the measurements
# (granian against gunicorn sync and gthread) and how to reproduce them.
run: bootstrap
	@echo ""
	@echo "HKMS console: http://$(HOST):$(PORT)/admin/  (HOST and PORT: make run HOST=0.0.0.0 PORT=9000)"
	@echo "Log in as 'admin' with the password printed above, also in $${HKMS_DATA_DIR:-var}/admin_password."
	@echo ""
	BIN=$(BIN) HOST=$(HOST) PORT=$(PORT) WORKERS=$(WORKERS) THREADS=$${THREADS:-8} scripts/serve.sh

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports  # the layer contracts in pyproject.toml (docs/architecture.md, "Layers")

typecheck: $(STAMP)
	$(BIN)/mypy hkms_core keys_app secrets_app hkms_site

pytest: $(STAMP) system-packages
	@bash scripts/run-tests.sh

test: lint typecheck pytest

bench: $(STAMP)
	$(BIN)/python bench/rotation_scaling.py

clean:
	rm -rf $(VENV) var test-artifacts
