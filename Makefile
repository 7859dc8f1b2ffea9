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

# gthread workers (WORKERS processes x THREADS threads, default 2 x 4): on the 2-core reference
# machine bench/read_path.py measured about twice the audited reads/s of 2 or 3 sync workers
# (and more than granian), since a thread waiting for SQLite's write lock or a PostgreSQL round
# trip no longer idles its process; the price is a longer p99 for concurrent writes on SQLite
# (README, "Performance").  The key and principal caches are per process.
run: bootstrap
	@echo ""
	@echo "HKMS console: http://$(HOST):$(PORT)/admin/  (HOST and PORT: make run HOST=0.0.0.0 PORT=9000)"
	@echo "Log in as 'admin' with the password printed above, also in $${HKMS_DATA_DIR:-var}/admin_password."
	@echo ""
	$(BIN)/gunicorn hkms_site.wsgi:application --bind $(HOST):$(PORT) --workers $(WORKERS) \
		--worker-class gthread --threads $${THREADS:-4} \
		--access-logfile - --forwarded-allow-ips 127.0.0.1

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy keys_app secrets_app hkms_site

pytest: $(STAMP) system-packages
	@bash scripts/run-tests.sh

test: lint typecheck pytest

bench: $(STAMP)
	$(BIN)/python bench/rotation_scaling.py

clean:
	rm -rf $(VENV) var test-artifacts
