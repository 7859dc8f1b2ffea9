"""The README's Quickstart, executed as written on a fresh data dir; who ran a command, seen from outside.

The first shell block (``make run``) is replaced by a ``LiveServer`` (the same
set-up: migrate the three databases, create the root key, serve); every other
shell block runs unchanged in bash (``set -euo pipefail``) from a scratch
directory holding ``manage.py`` and ``.venv`` as a clone would (symlinks to
this checkout and to the running virtualenv), with ``http://127.0.0.1:8000``
pointed at the live server's port.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import socket
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest

from tests.live import LiveServer, postgres_enabled

ROOT = Path(__file__).resolve().parents[2]
# `make run` serves from SQLite files in ./var: that is the install the Quickstart describes, and the
# SQLite half of `make test` runs it; the PostgreSQL half would repeat the same SQLite run.
pytestmark = pytest.mark.skipif(postgres_enabled(), reason="the Quickstart's `make run` uses SQLite (SQLite suite)")


class QuickServer(LiveServer):
    """``make run``'s set-up in one process (migrate the three databases, create the root key), one worker."""

    def setup(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.manage("shell", "-c", SETUP)


SETUP = (
    "from django.core.management import call_command\n"
    "for alias in ('default', 'kek', 'dek'):\n"
    "    call_command('migrate', database=alias, verbosity=0, interactive=False)\n"
    "call_command('init_hierarchy')\n"
)


def quickstart_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text()
    match = re.search(r"^## Quickstart\n(.*?)^## ", text, flags=re.S | re.M)
    assert match, "README.md has no '## Quickstart' section"
    return re.findall(r"^```sh\n(.*?)^```", match.group(1), flags=re.S | re.M)


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory):
    """Run the quickstart once against a fresh server; yields the server and the script's output."""
    blocks = quickstart_blocks()
    assert blocks[0].strip() == "make run", "the Quickstart starts the server with `make run`"
    server = QuickServer(tmp_path_factory.mktemp("quickstart-data"), workers=1).start()
    try:
        workdir = tmp_path_factory.mktemp("quickstart-clone")
        (workdir / "manage.py").symlink_to(ROOT / "manage.py")
        (workdir / ".venv").symlink_to(Path(sys.prefix))
        script = "set -euo pipefail\n" + "\n".join(blocks[1:]).replace("http://127.0.0.1:8000", server.url)
        env = {**server.env, "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        result = subprocess.run(
            ["bash", "-c", script], cwd=workdir, env=env, capture_output=True, text=True, timeout=300
        )
        yield server, result, workdir
    finally:
        server.stop()


def test_the_readme_quickstart_works_as_written_on_a_fresh_install(quickstart):
    _, result, _ = quickstart
    assert result.returncode == 0, f"stdout: {result.stdout[-2000:]}\nstderr: {result.stderr[-2000:]}"
    assert result.stdout.splitlines()[-1] == "s3cret"
    assert "Traceback" not in result.stderr


def test_a_command_run_in_a_subprocess_names_its_operator_in_the_audit_log(quickstart):
    server, result, workdir = quickstart
    assert result.returncode == 0
    # Read the server's audit table directly (a manage.py export costs one more Django start).
    with closing(sqlite3.connect(server.data_dir / "default.sqlite3")) as db:
        db.row_factory = sqlite3.Row
        rows = db.execute("SELECT actor, via, action, detail FROM audit_auditevent ORDER BY seq").fetchall()
    events = [{**dict(row), "detail": json.loads(row["detail"])} for row in rows]
    exported = json.dumps(events)
    created = [
        e for e in events if e["action"] == "project.create" and "create_project shop" in e["detail"]["command_line"]
    ]
    assert len(created) == 1
    event = created[0]
    user = pwd.getpwuid(os.geteuid()).pw_name
    assert event["actor"] == f"{user}@{socket.gethostname()}" and event["via"] == "command"
    assert event["detail"]["os_user"] == user and event["detail"]["host"] == socket.gethostname()
    assert isinstance(event["detail"]["pid"], int) and event["detail"]["pid"] != os.getpid()
    assert event["detail"]["command_line"].endswith("manage.py create_project shop")
    grants = [e for e in events if e["action"] == "role.grant"]
    assert {g["detail"]["command_line"].split("manage.py ", 1)[1].split()[0] for g in grants} == {
        "create_api_key",
        "grant_role",
    }
    assert all(g["actor"] == event["actor"] for g in grants)
    # The API key's secret never reaches the audit log, whoever ran the command.
    secret_key = json.loads((workdir / "app-key.json").read_text())["secret_key"]
    assert secret_key not in exported
