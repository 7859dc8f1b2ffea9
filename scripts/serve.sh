#!/usr/bin/env bash
# The production server of `make run` (also started by bench/read_path.py and the slow-client
# test, so that what is measured and tested is what runs): granian, a Rust HTTP server, with
# WORKERS processes (default 2) of THREADS Python threads each (default 8: concurrent reads of a
# worker then share one audit commit, which PostgreSQL needs — see docs/performance.md).
#
# Why granian (docs/performance.md has the figures): it parses HTTP in Rust on an async
# runtime and hands a request to a Python thread only once its headers have arrived, so slow
# or idle clients hold no Python thread (gunicorn's sync and gthread workers give each
# connection a worker or thread while it trickles its headers: 12 connections sending one
# header line per second starve them); a client that has not sent its headers within
# HEADER_TIMEOUT_MS (default 10 s) is disconnected.  It also served the audited read faster.
#
# HOST, PORT (127.0.0.1:8000), WORKERS, THREADS, HEADER_TIMEOUT_MS, ACCESS_LOG (1: one line
# per request on stdout, the default; 0: none) and BIN (the venv's bin dir) are read from the
# environment.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
access_log=()
if [ "${ACCESS_LOG:-1}" = "1" ]; then
  access_log=(--access-log --log-level info)
else
  access_log=(--log-level warning)
fi
exec "$BIN/granian" --interface wsgi \
  --host "${HOST:-127.0.0.1}" --port "${PORT:-8000}" \
  --workers "${WORKERS:-2}" --blocking-threads "${THREADS:-8}" --runtime-threads 1 \
  --http 1 --http1-header-read-timeout "${HEADER_TIMEOUT_MS:-10000}" \
  --workers-kill-timeout 10 --respawn-failed-workers \
  "${access_log[@]}" \
  hkms_site.wsgi:application
