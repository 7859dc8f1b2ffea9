#!/usr/bin/env bash
# The failover drill by hand (docs/deployment.md, "Failover drill"): a PostgreSQL primary and a
# streaming replica on free loopback ports, two HKMS nodes, a mixed load, the primary killed and
# the replica promoted; prints what was acknowledged, lost and answered.  Options:
#   --async    asynchronous replication (shows what it loses)    --stall  cut replication for 2 s first
#   --seconds N  load before the kill (default 3)
# Needs the distribution's PostgreSQL server binaries (/usr/lib/postgresql/*/bin); run as root it
# runs them as the postgres user.  Exit status 0 when nothing acknowledged was lost.
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${PYTHON:-.venv/bin/python}" -m tests.multinode.drill "$@"
