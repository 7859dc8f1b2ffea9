#!/usr/bin/env bash
# Run the pytest suite on SQLite and, when HKMS_TEST_POSTGRES=1, on PostgreSQL at the same
# time (two runs; each prints its own summary). Exit non-zero if either fails.
# HKMS_TEST_WORKERS=N (default 2) spreads each run's test files over N pytest-xdist workers, a
# whole file per worker, the longest files first (tests/conftest.py LONGEST_FIRST): live servers,
# crash and race tests spend much of their time waiting on subprocesses and the databases, which
# the other worker fills.  0 runs each suite in one process.
set -uo pipefail
cd "$(dirname "$0")/.."
mkdir -p test-artifacts
PYTEST=".venv/bin/python -m pytest --durations=25 -n ${HKMS_TEST_WORKERS:-2} --dist loadfile --no-loadscope-reorder"
if [ "${HKMS_TEST_POSTGRES:-0}" = "1" ]; then
  HKMS_TEST_POSTGRES=0 $PYTEST -q "$@" > test-artifacts/pytest-sqlite.log 2>&1 &
  sqlite_pid=$!
  HKMS_TEST_POSTGRES=1 $PYTEST -q "$@" > test-artifacts/pytest-postgres.log 2>&1 &
  pg_pid=$!
  wait $sqlite_pid; sqlite_rc=$?
  wait $pg_pid; pg_rc=$?
  echo "=== SQLite suite (exit $sqlite_rc) ==="; tail -n 40 test-artifacts/pytest-sqlite.log
  echo "=== PostgreSQL suite (exit $pg_rc) ==="; tail -n 40 test-artifacts/pytest-postgres.log
  [ $sqlite_rc -eq 0 ] && [ $pg_rc -eq 0 ]
else
  HKMS_TEST_POSTGRES=0 $PYTEST -q "$@"
fi
