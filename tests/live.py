"""A real HKMS server process for acceptance tests (gunicorn on a free 127.0.0.1 port).

Each ``LiveServer`` has its own data directory and, when ``HKMS_TEST_POSTGRES=1``,
its own three fresh PostgreSQL databases (dropped at ``stop``).  It puts migrated copies of
the three databases in place (``tests.dbtemplate``), initialises the hierarchy and serves
with two workers.
``create_api_key(...)`` runs the real command with ``--json``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from tests import dbtemplate

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
GUNICORN = str(Path(sys.executable).with_name("gunicorn"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def postgres_enabled() -> bool:
    return os.environ.get("HKMS_TEST_POSTGRES") == "1"


def _pg_admin(sql: str) -> None:
    import psycopg

    with psycopg.connect(
        host=os.environ.get("PGHOST", "127.0.0.1"),
        port=os.environ.get("PGPORT", "5432"),
        user=os.environ.get("PGUSER", "postgres"),
        dbname="postgres",
        autocommit=True,
    ) as conn:
        conn.execute(sql)


class LiveServer:
    def __init__(
        self,
        data_dir: Path,
        *,
        workers: int = 2,
        extra_env: dict[str, str] | None = None,
        command: list[str] | None = None,
    ) -> None:
        """``command``: the server to start instead of gunicorn (it reads ``PORT`` from the environment)."""
        self.data_dir = data_dir
        self.command = command
        self.workers = workers
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir / "server.log"
        self.env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("DATABASE_URL", "KEK_DATABASE_URL", "DEK_DATABASE_URL"))
        }
        self.env.update(
            {
                "HKMS_DATA_DIR": str(data_dir),
                "DJANGO_SETTINGS_MODULE": "hkms_site.settings",
                "HKMS_THROTTLE_ANON": "100000/minute",
                "HKMS_AUTH_FAILURES_PER_MINUTE": "100000",
            }
        )
        self.pg_names: list[str] = []
        if postgres_enabled():
            suffix = uuid.uuid4().hex[:10]
            for alias in ("default", "kek", "dek"):
                name = f"hkms_live_{suffix}_{alias}"
                _pg_admin(f'CREATE DATABASE "{name}"')
                self.pg_names.append(name)
                self.env[f"HKMS_PG_{alias.upper()}_NAME"] = name
            self.env["HKMS_TEST_POSTGRES"] = "1"
        else:
            self.env["HKMS_TEST_POSTGRES"] = "0"
        self.env.update(extra_env or {})
        if command is not None:
            self.env.update({"HOST": "127.0.0.1", "PORT": str(self.port)})

    def manage(self, *args: str, check: bool = True, input: str | None = None, timeout: float = 120) -> str:
        result = subprocess.run(
            [PYTHON, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            input=input,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)} failed ({result.returncode}): {result.stderr[-2000:]}")
        return result.stdout

    def setup(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # The three databases migrated once per test process and copied (tests/dbtemplate.py).
        dbtemplate.install(self.data_dir, self.pg_names)
        self.manage("init_hierarchy")

    def start(self) -> LiveServer:
        self.setup()
        log = self.log_path.open("ab")
        command = self.command or [
            GUNICORN,
            "hkms_site.wsgi:application",
            "--bind",
            f"127.0.0.1:{self.port}",
            "--workers",
            str(self.workers),
            "--timeout",
            "60",
            "--graceful-timeout",
            "5",
        ]
        self.process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited early: {self.log_path.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2):  # noqa: S310 (loopback URL)
                    return self
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("server did not become healthy within 30 s")

    def create_api_key(self, *args: str) -> dict[str, Any]:
        return json.loads(self.manage("create_api_key", *args, "--json"))  # type: ignore[no-any-return]

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self.process = None
        for name in self.pg_names:
            try:
                _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            except Exception as exc:
                print(f"could not drop {name}: {exc}", file=sys.stderr)
        self.pg_names = []


def sdk_client(server: LiveServer, credentials: dict[str, Any]) -> Any:
    """A ``scaleway.Client`` pointed at ``server`` with the given ``create_api_key --json`` output."""
    from scaleway import Client

    return Client(
        access_key=credentials["access_key"],
        secret_key=credentials["secret_key"],
        api_url=server.url,
        default_project_id=credentials.get("project_id"),
        default_organization_id=credentials.get("organization_id"),
        default_region="fr-par",
    )
