"""A throw-away HKMS installation on real databases, driven through subprocesses.

The crash, concurrency and plaintext-scan tests need what pytest-django's test
databases cannot give: files on disk (SQLite) or databases that other
processes can open, and processes that can be killed.  :class:`Instance`
makes a fresh ``HKMS_DATA_DIR`` with three SQLite files — or, when
``HKMS_TEST_POSTGRES=1``, three freshly created PostgreSQL databases with
unique names (dropped again by :meth:`Instance.close`) — puts migrated copies of
the three databases in place (``tests.dbtemplate``) and initialises the hierarchy.

The same module is also the helper *script* those tests run inside the
instance (``python -m tests.keys_app.instance <command> …``): ``seed`` writes
secrets through the services and records the payloads, ``check`` reads every
payload back and compares, ``read-loop`` reads until told to stop, and
``rotate-while-reading`` runs rotations in a thread while other threads read.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import signal
import subprocess
import sys
import threading
import time
import traceback
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests import dbtemplate

REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
_DB_ENV = (
    "DATABASE_URL",
    "KEK_DATABASE_URL",
    "DEK_DATABASE_URL",
    "HKMS_ROOT_KEY_FILE",
    "HKMS_PG_DEFAULT_NAME",
    "HKMS_PG_KEK_NAME",
    "HKMS_PG_DEK_NAME",
)
ALIASES = ("default", "kek", "dek")


def use_postgres() -> bool:
    return os.environ.get("HKMS_TEST_POSTGRES", "0").strip().lower() in {"1", "true", "yes", "on"}


def _pg_connect(dbname: str = "postgres") -> Any:
    import psycopg

    return psycopg.connect(
        host=os.environ.get("PGHOST", "127.0.0.1"),
        port=os.environ.get("PGPORT", "5432"),
        user=os.environ.get("PGUSER", "postgres"),
        password=os.environ.get("PGPASSWORD", ""),
        dbname=dbname,
        autocommit=True,
        connect_timeout=10,
    )


class Instance:
    """A fresh data directory (and PostgreSQL databases when enabled) for one test."""

    def __init__(self, data_dir: Path, *, postgres: bool | None = None, extra_env: dict[str, str] | None = None):
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.postgres = use_postgres() if postgres is None else postgres
        self.env = {k: v for k, v in os.environ.items() if k not in _DB_ENV}
        self.env.update(
            {
                "DJANGO_SETTINGS_MODULE": "hkms_site.settings",
                "HKMS_DATA_DIR": str(self.data_dir),
                "HKMS_TEST_POSTGRES": "1" if self.postgres else "0",
                "PYTHONPATH": str(REPO),
                "PYTHONUNBUFFERED": "1",
            }
        )
        self.pg_names: dict[str, str] = {}
        if self.postgres:
            token = f"hkms_t{os.getpid()}_{secrets.token_hex(4)}"
            self.pg_names = {alias: f"{token}_{alias}" for alias in ALIASES}
            with _pg_connect() as conn:
                for name in self.pg_names.values():
                    conn.execute(f'CREATE DATABASE "{name}"')
            for alias, name in self.pg_names.items():
                self.env[f"HKMS_PG_{alias.upper()}_NAME"] = name
        self.env.update(extra_env or {})

    # -- processes ----------------------------------------------------------------------
    def run(
        self, *args: str, timeout: float = 120, check: bool = True, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [PYTHON, *args],
            cwd=REPO,
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"{' '.join(args)} exited {result.returncode}\n"
                f"stdout:\n{result.stdout[-4000:]}\nstderr:\n{result.stderr[-4000:]}"
            )
        return result

    def manage(self, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return self.run("manage.py", *args, **kwargs)

    def popen_manage(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [PYTHON, "manage.py", *args],
            cwd=REPO,
            env={**self.env, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def script(self, *args: str, **kwargs: Any) -> Any:
        """Run a command of this module inside the instance; returns its JSON output."""
        result = self.run("-m", "tests.keys_app.instance", *args, **kwargs)
        return json.loads(result.stdout.strip().splitlines()[-1])

    def popen_script(
        self, *args: str, env: dict[str, str] | None = None, stdin: int | None = None
    ) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [PYTHON, "-m", "tests.keys_app.instance", *args],
            cwd=REPO,
            env={**self.env, **(env or {})},
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    @contextmanager
    def dumper(self):
        """A long-lived reader process; ``dump()`` reads every payload with cold caches."""
        process = self.popen_script("serve", stdin=subprocess.PIPE)

        def dump(*options: str) -> dict[str, Any]:
            assert process.stdin is not None and process.stdout is not None
            process.stdin.write(" ".join(["dump", *options]) + "\n")
            process.stdin.flush()
            line = process.stdout.readline()
            if not line:
                raise AssertionError(f"the dump process died: {process.stderr.read()[-3000:]}")  # type: ignore[union-attr]
            return json.loads(line)

        try:
            yield dump
        finally:
            if process.poll() is None:
                process.communicate("stop\n", timeout=30)

    # -- set-up ---------------------------------------------------------------------------
    def bootstrap(self) -> None:
        # The three databases migrated once per test process and copied (tests/dbtemplate.py).
        dbtemplate.install(self.data_dir, self.pg_names)
        self.manage("init_hierarchy")

    def sqlite_files(self) -> list[Path]:
        """The database files and their WAL/shared-memory companions that exist now."""
        files = []
        for stem in ("default", "kek", "dek"):
            for suffix in ("", "-wal", "-shm", "-journal"):
                path = self.data_dir / f"{stem}.sqlite3{suffix}"
                if path.exists():
                    files.append(path)
        return files

    def close(self) -> None:
        if self.pg_names:
            with _pg_connect() as conn:
                for name in self.pg_names.values():
                    conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            self.pg_names = {}


@contextmanager
def instance(data_dir: Path, **kwargs: Any):
    inst = Instance(data_dir, **kwargs)
    try:
        inst.bootstrap()
        # The engine is the one asked for: SQLite files exist exactly when PostgreSQL is off.
        assert bool(inst.sqlite_files()) is not inst.postgres, inst.sqlite_files()
        yield inst
    finally:
        inst.close()


def kill(process: subprocess.Popen[str]) -> bool:
    """SIGKILL ``process`` if it still runs; True when it was killed (not finished)."""
    if process.poll() is not None:
        process.communicate()
        return False
    os.kill(process.pid, signal.SIGKILL)
    process.communicate(timeout=30)
    return process.returncode == -signal.SIGKILL


# =========================================================================================
# Script side: runs inside the instance (python -m tests.keys_app.instance <command> ...)
# =========================================================================================
def _setup() -> None:
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hkms_site.settings")
    django.setup()


def _load_expected(path: str) -> dict[str, bytes]:
    return {k: bytes.fromhex(v) for k, v in json.loads(Path(path).read_text()).items()}


def cmd_seed(args: list[str]) -> dict[str, Any]:
    """``seed OUT PROJECTS SECRETS VERSIONS_PER_SECRET [EXTRA_KEYS] [PREFIX]``.

    Writes through the services (fresh DEK per version), each project's
    writes in one transaction per database (DEKs committed first).  OUT gets
    ``{version_id: payload hex}``.
    """
    _setup()
    from django.db import transaction

    from keys_app.services.material import key_create_with_material
    from keys_app.services.projects import project_create_with_default_key as project_create
    from keys_app.services.projects import project_default_key
    from secrets_app.storage import secret_create, secret_version_create

    out, n_projects, n_secrets, per_secret = args[0], int(args[1]), int(args[2]), int(args[3])
    extra_keys = int(args[4]) if len(args) > 4 else 0
    prefix = args[5] if len(args) > 5 else "payload"
    projects = [project_create(name=f"project-{i}") for i in range(n_projects)]
    keys = [project_default_key(p) for p in projects]
    for i in range(extra_keys):
        project = projects[i % n_projects]
        keys.append(key_create_with_material(project=project, name=f"extra-{i}"))
    expected: dict[str, str] = {}
    with transaction.atomic(using="default"), transaction.atomic(using="dek"):
        for s in range(n_secrets):
            project = projects[s % n_projects]
            own_keys = [k for k in keys if k.project_id == project.id]
            secret = secret_create(project=project, name=f"secret-{s}", key=own_keys[s % len(own_keys)])
            for r in range(per_secret):
                data = f"{prefix}-{s}-{r}-{secrets.token_hex(6)}".encode() + bytes([s % 256, r % 256])
                version = secret_version_create(secret=secret, data=data)
                expected[str(version.id)] = data.hex()
    Path(out).write_text(json.dumps(expected))
    return {"projects": n_projects, "keys": [str(k.id) for k in keys], "versions": len(expected)}


def cmd_rotate_keks(args: list[str]) -> dict[str, Any]:
    """``rotate-keks``: a new primary KEK version for every key (what rotate_kek does per key)."""
    _setup()
    from keys_app.models import Key
    from keys_app.services.rotation.kek import kek_rotate

    rotated = [kek_rotate(key=key).primary_version for key in Key.objects.order_by("id")]
    return {"rotated": len(rotated)}


def _read_one(version_id: str) -> bytes:
    from secrets_app.models import SecretVersion
    from secrets_app.storage import secret_version_payload

    version = SecretVersion.objects.select_related("secret__key").get(id=version_id)
    return secret_version_payload(version)


def cmd_check(args: list[str]) -> dict[str, Any]:
    """``check EXPECTED``: read every payload (cold cache) and compare with the seeded one."""
    _setup()
    from secrets_app.models import SecretVersion
    from secrets_app.storage import secret_version_payload

    expected = _load_expected(args[0])
    seen, mismatches, errors = 0, [], []
    qs = SecretVersion.objects.filter(dek_id__isnull=False).select_related("secret__key").order_by("id")
    for version in qs.iterator(chunk_size=1000):
        seen += 1
        try:
            data = secret_version_payload(version)
        except Exception as exc:
            errors.append(f"{version.id}: {type(exc).__name__}: {exc}")
            continue
        if expected.get(str(version.id)) != data:
            mismatches.append(str(version.id))
    missing = len(
        set(expected)
        - {str(i) for i in SecretVersion.objects.filter(dek_id__isnull=False).values_list("id", flat=True)}
    )
    return {
        "checked": seen,
        "missing": missing,
        "mismatches": mismatches[:20],
        "errors": errors[:20],
        "ok": not mismatches and not errors and not missing and seen == len(expected),
    }


def _reader(expected: dict[str, bytes], stop: threading.Event, report: dict[str, Any], seed: int) -> None:
    from django.db import connections

    rng = random.Random(seed)
    ids = list(expected)
    try:
        while not stop.is_set():
            version_id = rng.choice(ids)
            try:
                data = _read_one(version_id)
            except Exception as exc:
                report["failures"].append(f"{version_id}: {type(exc).__name__}: {exc}")
                continue
            report["reads"] += 1
            if data != expected[version_id]:
                report["failures"].append(f"{version_id}: payload differs")
    finally:
        connections.close_all()


def cmd_dump(args: list[str]) -> dict[str, Any]:
    """``dump [--bulk]``: every payload (hex) by version id, read errors, and the running jobs.

    By default each version is read through ``secret_version_payload``, as the
    API does.  ``--bulk`` opens the same ciphertexts with the same functions
    (``dek_unwrap``, ``payload_open``) but fetches DEKs a thousand at a time:
    about three times faster, for the checks after every kill of the crash test.
    """
    _setup()
    from keys_app.errors import HierarchyError
    from keys_app.models import Dek, RotationJob
    from keys_app.services.material import dek_unwrap
    from secrets_app.models import SecretVersion
    from secrets_app.storage import payload_open, secret_version_payload

    bulk = "--bulk" in args
    payloads, errors = {}, []
    qs = SecretVersion.objects.filter(dek_id__isnull=False).select_related("secret__key").order_by("id")
    batch: list[Any] = []

    def flush() -> None:
        deks = Dek.objects.using("dek").in_bulk([v.dek_id for v in batch])
        for version in batch:
            try:
                dek = deks.get(version.dek_id)
                if dek is None:
                    raise HierarchyError(f"DEK {version.dek_id} is missing")
                payloads[str(version.id)] = payload_open(material=dek_unwrap(dek), version=version).hex()
            except Exception as exc:
                errors.append(f"{version.id}: {type(exc).__name__}: {exc}")
        batch.clear()

    for version in qs.iterator(chunk_size=1000):
        if bulk:
            batch.append(version)
            if len(batch) == 1000:
                flush()
            continue
        try:
            payloads[str(version.id)] = secret_version_payload(version).hex()
        except Exception as exc:
            errors.append(f"{version.id}: {type(exc).__name__}: {exc}")
    if batch:
        flush()
    jobs = [
        {"id": str(j.id), "kind": j.kind, "processed": j.processed}
        for j in RotationJob.objects.using("kek").filter(state=RotationJob.State.RUNNING)
    ]
    return {"payloads": payloads, "errors": errors[:20], "running_jobs": jobs}


def cmd_serve(args: list[str]) -> dict[str, Any]:
    """``serve``: answer each ``dump [--bulk]`` line on stdin with one JSON line, as a fresh process would.

    Saves the interpreter and Django start-up between the many checks of the
    crash test; every key cache and root key verification is dropped first.
    """
    _setup()
    from django.db import connections

    from keys_app.providers import reset_providers
    from keys_app.services import material, root

    for line in sys.stdin:
        words = line.split()
        if not words or words[0] != "dump":
            break
        material.key_cache().clear()
        root.forget_verified_root_keys()
        reset_providers()
        connections.close_all()
        print(json.dumps(cmd_dump(words[1:])), flush=True)
    return {"served": True}


def cmd_read_loop(args: list[str]) -> dict[str, Any]:
    """``read-loop EXPECTED STOP_FILE [THREADS]``: read random payloads until STOP_FILE exists."""
    _setup()
    expected = _load_expected(args[0])
    stop_file = Path(args[1])
    n_threads = int(args[2]) if len(args) > 2 else 2
    stop = threading.Event()
    report: dict[str, Any] = {"reads": 0, "failures": []}
    threads = [threading.Thread(target=_reader, args=(expected, stop, report, i)) for i in range(n_threads)]
    for t in threads:
        t.start()
    print("reading", flush=True)  # tells the test the readers are up
    deadline = time.monotonic() + 300
    while not stop_file.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    stop.set()
    for t in threads:
        t.join()
    return {"reads": report["reads"], "failures": report["failures"][:20], "failure_count": len(report["failures"])}


def cmd_rotate_while_reading(args: list[str]) -> dict[str, Any]:
    """``rotate-while-reading EXPECTED ROUNDS``: rotations in a thread, readers in others.

    Each round: DEK rotation of everything, KEK rotation of every key and a
    re-wrap, and a REK rotation.  Small batches keep the readers racing many
    commits.
    """
    _setup()
    from django.db import connections

    from keys_app.models import Key
    from keys_app.services.rotation.kek import deks_rewrap, kek_rotate
    from keys_app.services.rotation.rek import rek_rotate
    from secrets_app.services.dek_rotation import deks_rotate

    expected = _load_expected(args[0])
    rounds = int(args[1])
    stop = threading.Event()
    report: dict[str, Any] = {"reads": 0, "failures": []}
    done: dict[str, Any] = {"rotated": 0, "rewrapped": 0, "rek": 0, "error": None}

    def rotate() -> None:
        try:
            for _ in range(rounds):
                done["rotated"] += deks_rotate(batch_size=50)["versions_rotated"]
                for key in Key.objects.order_by("id"):
                    kek_rotate(key=key)
                done["rewrapped"] += deks_rewrap(batch_size=50)["deks_rewrapped"]
                for _ in range(3):
                    rek_rotate(batch_size=1)
                    done["rek"] += 1
        except Exception:
            done["error"] = traceback.format_exc()
        finally:
            stop.set()
            connections.close_all()

    readers = [threading.Thread(target=_reader, args=(expected, stop, report, i)) for i in range(2)]
    for t in readers:
        t.start()
    time.sleep(0.2)
    rotator = threading.Thread(target=rotate)
    started = time.monotonic()
    rotator.start()
    rotator.join(timeout=600)
    stop.set()
    for t in readers:
        t.join()
    return {
        "reads": report["reads"],
        "failures": report["failures"][:20],
        "failure_count": len(report["failures"]),
        "seconds": round(time.monotonic() - started, 2),
        **done,
    }


def cmd_key_material(args: list[str]) -> dict[str, Any]:
    """``key-material``: hex of every unwrapped KEK and DEK (for the plaintext scan only)."""
    _setup()
    from keys_app.models import Dek, KekVersion
    from keys_app.services.material import dek_unwrap, kek_material

    keks = [
        kek_material(row.key_id, row.version).reveal().hex()
        for row in KekVersion.objects.using("kek").exclude(state=KekVersion.State.DESTROYED)
    ]
    deks = [dek_unwrap(row).reveal().hex() for row in Dek.objects.using("dek").all()]
    return {"keks": keks, "deks": deks}


def needle_forms(needle: bytes) -> list[bytes]:
    """A secret as it could appear if leaked: raw, hex (both cases) and base64."""
    import base64

    return [needle, needle.hex().encode(), needle.hex().upper().encode(), base64.b64encode(needle)]


def cmd_scan_sql(args: list[str]) -> dict[str, Any]:
    """``scan-sql NEEDLES``: every value of every table of the three databases, searched.

    NEEDLES is a JSON list of hex strings.  Returns where any of them appears
    (raw, hex or base64), as ``alias.table``.
    """
    _setup()
    from django.db import connections

    needles = [form for value in json.loads(Path(args[0]).read_text()) for form in needle_forms(bytes.fromhex(value))]
    hits, rows = set(), 0
    for alias in ALIASES:
        connection = connections[alias]
        with connection.cursor() as cursor:
            for table in connection.introspection.table_names(cursor):
                cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")  # noqa: S608
                for row in cursor.fetchall():
                    rows += 1
                    for value in row:
                        if value is None:
                            continue
                        binary = isinstance(value, bytes | bytearray | memoryview)
                        raw = bytes(value) if binary else str(value).encode()
                        if any(form in raw for form in needles):
                            hits.add(f"{alias}.{table}")
    return {"rows": rows, "hits": sorted(hits)}


def cmd_jobs(args: list[str]) -> dict[str, Any]:
    """``jobs``: the rotation jobs (kind, state, processed) for the crash test's bookkeeping."""
    _setup()
    from keys_app.models import RotationJob

    return {
        "jobs": [
            {
                "id": str(j.id),
                "kind": j.kind,
                "scope": j.scope,
                "state": j.state,
                "processed": j.processed,
                "phase": j.phase,
            }
            for j in RotationJob.objects.using("kek").order_by("started_at")
        ]
    }


COMMANDS = {
    "seed": cmd_seed,
    "rotate-keks": cmd_rotate_keks,
    "check": cmd_check,
    "dump": cmd_dump,
    "serve": cmd_serve,
    "read-loop": cmd_read_loop,
    "rotate-while-reading": cmd_rotate_while_reading,
    "key-material": cmd_key_material,
    "jobs": cmd_jobs,
    "scan-sql": cmd_scan_sql,
}


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in COMMANDS:
        print(f"usage: python -m tests.keys_app.instance ({'|'.join(COMMANDS)}) ...", file=sys.stderr)
        return 2
    result = COMMANDS[argv[0]](argv[1:])
    print(json.dumps(result, default=str), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

__all__ = ["Instance", "instance", "kill", "use_postgres"]
