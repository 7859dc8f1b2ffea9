"""The rotation benchmark runs end to end (``--quick``: S = 200 and 1000) and reads back every payload."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_rotation_scaling_quick_runs(tmp_path):
    figures = tmp_path / "figures.json"
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / "rotation_scaling.py"), "--quick", "--json", str(figures)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "targets:" in result.stdout

    rows = json.loads(figures.read_text())["rows"]
    assert [r["size"] for r in rows] == [200, 1000]
    for row in rows:
        assert row["check"]["ok"] and row["check"]["read_back"] == row["size"]
        assert row["rek_queries"]["default"] == 0 and row["rek_queries"]["dek"] == 0
