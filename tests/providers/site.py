"""A throw-away HKMS installation driven through subprocesses (gunicorn, seal keeper, commands).

Fresh ``HKMS_DATA_DIR`` under a short ``/tmp`` path (Unix socket paths are
limited to 107 bytes), three SQLite files — or three fresh PostgreSQL
databases when ``HKMS_TEST_POSTGRES=1``, dropped by :meth:`Site.close`.
Also the helper *script* the tests run inside it
(``python -m tests.providers.site seed OUT N`` / ``check EXPECTED``).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from tests import dbtemplate
from tests.live import _pg_admin, free_port, postgres_enabled

REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
GUNICORN = str(Path(sys.executable).with_name("gunicorn"))
_INHERITED_DB_ENV = (
    "DATABASE_URL",
    "KEK_DATABASE_URL",
    "DEK_DATABASE_URL",
    "HKMS_ROOT_KEY_FILE",
    "HKMS_PG_DEFAULT_NAME",
    "HKMS_PG_KEK_NAME",
    "HKMS_PG_DEK_NAME",
)


class Site:
    def __init__(self, extra_env: dict[str, str] | None = None) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="hkms-", dir="/tmp"))
        self.data_dir = self.base / "data"
        self.data_dir.mkdir()
        self.socket = self.base / "run" / "keeper.sock"
        self.env = {k: v for k, v in os.environ.items() if k not in _INHERITED_DB_ENV}
        self.env.update(
            {
                "DJANGO_SETTINGS_MODULE": "hkms_site.settings",
                "HKMS_DATA_DIR": str(self.data_dir),
                "HKMS_SHAMIR_KEEPER_SOCKET": str(self.socket),
                "HKMS_THROTTLE_ANON": "100000/minute",
                "PYTHONPATH": str(REPO),
                "PYTHONUNBUFFERED": "1",
                "HKMS_TEST_POSTGRES": "1" if postgres_enabled() else "0",
            }
        )
        self.pg_names: list[str] = []
        if postgres_enabled():
            token = f"hkms_p{uuid.uuid4().hex[:10]}"
            for alias in ("default", "kek", "dek"):
                name = f"{token}_{alias}"
                _pg_admin(f'CREATE DATABASE "{name}"')
                self.pg_names.append(name)
                self.env[f"HKMS_PG_{alias.upper()}_NAME"] = name
        self.env.update(extra_env or {})
        self.processes: list[subprocess.Popen[bytes]] = []

    # -- processes ----------------------------------------------------------------------
    def run(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 180
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [PYTHON, *args],
            cwd=REPO,
            env=self.env,
            capture_output=True,
            text=True,
            input=input,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"{' '.join(args)} exited {result.returncode}\nstdout:\n{result.stdout[-3000:]}"
                f"\nstderr:\n{result.stderr[-3000:]}"
            )
        return result

    def manage(self, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return self.run("manage.py", *args, **kwargs)

    def script(self, *args: str) -> Any:
        return json.loads(self.run("-m", "tests.providers.site", *args).stdout.splitlines()[-1])

    def start(self, argv: list[str], log_name: str) -> subprocess.Popen[bytes]:
        log = (self.data_dir / log_name).open("ab")
        process = subprocess.Popen(argv, cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        self.processes.append(process)
        return process

    def migrate(self) -> None:
        """Migrated databases: copies of ones migrated once per test process (tests/dbtemplate.py)."""
        dbtemplate.install(self.data_dir, self.pg_names)

    def start_keeper(self) -> subprocess.Popen[bytes]:
        process = self.start([PYTHON, "manage.py", "seal_keeper"], "keeper.log")
        deadline = time.monotonic() + 30
        while not self.socket.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the seal keeper did not start: {(self.data_dir / 'keeper.log').read_text()}")
            time.sleep(0.05)
        return process

    def start_gunicorn(self, workers: int, app: str = "tests.providers.probe_wsgi:application") -> str:
        port = free_port()
        self.gunicorn = self.start(
            [
                GUNICORN,
                app,
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                str(workers),
                "--timeout",
                "60",
                "--graceful-timeout",
                "5",
                "--access-logfile",
                "-",
            ],
            "gunicorn.log",
        )
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while len(self.worker_pids()) < workers:
            if self.gunicorn.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"gunicorn did not start: {(self.data_dir / 'gunicorn.log').read_text()}")
            time.sleep(0.1)
        return url

    def worker_pids(self) -> set[int]:
        """The gunicorn master's children, read from /proc."""
        children = set()
        for stat_file in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat_file.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == self.gunicorn.pid:
                children.add(int(stat_file.parent.name))
        return children

    def stop(self, process: subprocess.Popen[bytes]) -> None:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)

    def close(self) -> None:
        for process in reversed(self.processes):
            self.stop(process)
        for name in self.pg_names:
            _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        shutil.rmtree(self.base, ignore_errors=True)

    def files(self) -> list[Path]:
        return [p for p in self.base.rglob("*") if p.is_file()]


# =========================================================================================
# Script side (python -m tests.providers.site <command> ...), inside the site's environment
# =========================================================================================
def _setup() -> None:
    import django

    django.setup()


def cmd_seed(args: list[str]) -> dict[str, Any]:
    """``seed OUT KEYS``: one project, KEYS keys, one secret with one version per key."""
    _setup()
    from keys_app.services.material import key_create_with_material
    from keys_app.services.projects import project_create_with_default_key as project_create
    from secrets_app.storage import secret_create, secret_version_create

    out, count = args[0], int(args[1])
    project = project_create(name="migration")
    expected = {}
    for index in range(count):
        key = key_create_with_material(project=project, name=f"key-{index}")
        secret = secret_create(project=project, name=f"secret-{index}", key=key)
        data = f"payload-{index}-{secrets.token_hex(8)}".encode()
        expected[str(secret_version_create(secret=secret, data=data).id)] = data.hex()
    Path(out).write_text(json.dumps(expected))
    return {"versions": len(expected)}


def cmd_check(args: list[str]) -> dict[str, Any]:
    """``check EXPECTED``: read every payload with cold caches and compare."""
    _setup()
    from secrets_app.models import SecretVersion
    from secrets_app.storage import secret_version_payload

    expected = json.loads(Path(args[0]).read_text())
    errors, mismatches = [], 0
    for version in SecretVersion.objects.select_related("secret__key"):
        try:
            if secret_version_payload(version).hex() != expected.get(str(version.id)):
                mismatches += 1
        except Exception as exc:
            errors.append(f"{version.id}: {type(exc).__name__}: {exc}")
    return {
        "checked": SecretVersion.objects.count(),
        "expected": len(expected),
        "mismatches": mismatches,
        "errors": errors[:10],
    }


def cmd_rek(args: list[str]) -> dict[str, Any]:
    """``rek``: REK rows and the running root key job."""
    _setup()
    from keys_app.models import KekVersion, RootKeyVersion, RotationJob

    job = RotationJob.objects.using("kek").filter(kind="rotate_root_key", state="running").first()
    return {
        "versions": [[r.version, r.provider, r.state] for r in RootKeyVersion.objects.using("kek").order_by("version")],
        "job_processed": job.processed if job else None,
        "kek_rek_versions": sorted(set(KekVersion.objects.using("kek").values_list("rek_version", flat=True))),
    }


if __name__ == "__main__":
    command, *rest = sys.argv[1:]
    print(json.dumps({"seed": cmd_seed, "check": cmd_check, "rek": cmd_rek}[command](rest)))
