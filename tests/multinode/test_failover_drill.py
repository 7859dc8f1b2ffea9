"""The failover drill (tests/multinode/drill.py) in the PostgreSQL run of `make test`: two nodes on a
primary + synchronous streaming replica; the primary is killed mid-load and the replica promoted.
Nothing acknowledged is lost, every payload reads back identical from both nodes, the hierarchy and
the audit chain verify, the nodes answer 503 (never 500) during the outage and recover by themselves."""

from __future__ import annotations

import json

import pytest

from tests.live import postgres_enabled
from tests.multinode.drill import run_drill
from tests.multinode.pgcluster import server_bin_dir

pytestmark = pytest.mark.slow


@pytest.mark.skipif(not postgres_enabled(), reason="the drill runs in the PostgreSQL run (HKMS_TEST_POSTGRES=1)")
def test_failover_with_synchronous_replication_loses_nothing_and_answers_503_meanwhile(tmp_path):
    if server_bin_dir() is None:
        pytest.fail("no PostgreSQL server binaries under /usr/lib/postgresql/*/bin (apt-get install postgresql)")
    report = run_drill(tmp_path, synchronous=True, seconds=3.0, log=lambda message: None)
    summary = json.dumps(report.summary(), indent=1)
    assert report.problems == [], summary
    assert len(report.acknowledged) >= 5, summary
    assert report.lost == [] and report.mismatched == [] and report.reused == [], summary
    assert report.verify == {"verify_hierarchy --repair": 0, "verify_hierarchy": 0, "verify_audit_log": 0}, summary
    outage = report.statuses["outage"]
    assert sum(count for key, count in outage.items() if key.endswith(":503")) >= 1, summary
    assert not [key for key in report.statuses["promoted"] if key.endswith((":500", ":502", ":504"))], summary
    assert report.timings["total"] < 200, summary  # about a minute on an idle 2-core machine
