"""The read-path benchmark runs end to end in its quick mode (HKMS, and OpenBao when its binary is there)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_read_path_quick_runs(tmp_path):
    figures = tmp_path / "figures.json"
    command = [sys.executable, str(REPO / "bench" / "read_path.py"), "--quick", "--json", str(figures)]
    if os.environ.get("HKMS_TEST_POSTGRES") == "1":
        command.append("--postgres")
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "targets:" in result.stdout

    report = json.loads(figures.read_text())
    for endpoint in ("access", "get_secret", "whoami", "create_version"):
        assert report["results"][endpoint]["requests"] > 0 and report["results"][endpoint]["errors"] == 0
    assert {r["ratio"] for r in report["ratios"]} >= {"access / get_secret", "create_version / access"}
    if shutil.which("valgrind"):  # the callgrind count: every phase, and the hot path cheaper than the general one
        counts = report["instructions_per_read"]
        assert set(counts) == {
            "access",
            "access_general",
            "access_by_path",
            "get_secret",
            "access_unaudited",
            "create_version",
            "create_version_general",
        }
        # Two reads per phase (--quick): one-time costs weigh on each phase differently, so only the
        # order that is large enough to hold then is asserted (the hot path does far less than the
        # general path); "unaudited < audited" is a figure of the full-size run, not of this smoke run.
        assert counts["access_unaudited"] > 0, counts
        assert 0 < counts["access"] < counts["access_general"], counts
