"""Migrated databases for throw-away installations, migrated once per test process and copied.

Live servers (``tests.live``), crash/concurrency instances (``tests.keys_app.instance``) and
provider sites (``tests.providers.site``) each need the three databases (default, kek, dek)
freshly migrated.  Running ``manage.py migrate`` three times costs each of them seconds of CPU;
instead the first one in a test process migrates a *template* set, and every installation
gets a copy:

* SQLite: the three ``*.sqlite3`` files of a template directory are copied into the
  installation's ``HKMS_DATA_DIR`` (the template was closed cleanly: no WAL left behind).
* PostgreSQL: each of the installation's databases is (re)created with
  ``CREATE DATABASE … TEMPLATE <template>``, a copy of the migrated template database.

A copy is byte-for-byte what ``migrate`` would have produced (the migrations read no setting
and no environment), so the installations are the same as before, only cheaper.  Tests that are
*about* migrating (the Quickstart, the backup drill) keep running ``migrate`` themselves.

Templates are per process (their names carry the pid; pytest-xdist workers each build their
own) and are removed when the process exits.  A template database has no open connection once
built (it is migrated in a subprocess that has exited), which ``CREATE DATABASE … TEMPLATE``
requires.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
ALIASES = ("default", "kek", "dek")
SQLITE_FILES = {alias: f"{alias}.sqlite3" for alias in ALIASES}
_DB_ENV = (
    "DATABASE_URL",
    "KEK_DATABASE_URL",
    "DEK_DATABASE_URL",
    "HKMS_ROOT_KEY_FILE",
    "HKMS_PG_DEFAULT_NAME",
    "HKMS_PG_KEK_NAME",
    "HKMS_PG_DEK_NAME",
)
_MIGRATE = (
    "import django\n"
    "django.setup()\n"
    "from django.core.management import call_command\n"
    "for alias in ('default', 'kek', 'dek'):\n"
    "    call_command('migrate', database=alias, interactive=False, verbosity=0)\n"
)

_lock = threading.Lock()
_sqlite_template: Path | None = None
_pg_template: dict[str, str] | None = None


def _pg_admin(sql: str) -> None:
    import psycopg

    with psycopg.connect(
        host=os.environ.get("PGHOST", "127.0.0.1"),
        port=os.environ.get("PGPORT", "5432"),
        user=os.environ.get("PGUSER", "postgres"),
        dbname="postgres",
        autocommit=True,
        connect_timeout=10,
    ) as conn:
        conn.execute(sql)


def _migrate(data_dir: Path, *, postgres: bool, pg_names: dict[str, str] | None = None) -> None:
    env = {k: v for k, v in os.environ.items() if k not in _DB_ENV}
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "hkms_site.settings",
            "HKMS_DATA_DIR": str(data_dir),
            "HKMS_TEST_POSTGRES": "1" if postgres else "0",
            "PYTHONPATH": str(REPO),
        }
    )
    for alias, name in (pg_names or {}).items():
        env[f"HKMS_PG_{alias.upper()}_NAME"] = name
    result = subprocess.run(
        [PYTHON, "-c", _MIGRATE], cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"migrating the template databases failed: {result.stderr[-3000:]}")


def _sqlite_template_dir() -> Path:
    global _sqlite_template
    with _lock:
        if _sqlite_template is None:
            directory = Path(tempfile.mkdtemp(prefix=f"hkms-tpl-{os.getpid()}-"))
            atexit.register(shutil.rmtree, directory, True)
            _migrate(directory, postgres=False)
            leftovers = [p.name for p in directory.glob("*.sqlite3-*")]
            assert not leftovers, f"the template was not closed cleanly: {leftovers}"
            _sqlite_template = directory
        return _sqlite_template


def _drop_pg_template(names: dict[str, str]) -> None:
    for name in names.values():
        try:
            _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        except Exception as exc:
            print(f"could not drop the template database {name}: {exc}", file=sys.stderr)


def _pg_template_names() -> dict[str, str]:
    global _pg_template
    with _lock:
        if _pg_template is None:
            token = f"hkms_tpl_{os.getpid()}_{uuid.uuid4().hex[:8]}"
            names = {alias: f"{token}_{alias}" for alias in ALIASES}
            atexit.register(_drop_pg_template, names)
            for name in names.values():
                _pg_admin(f'CREATE DATABASE "{name}"')
            with tempfile.TemporaryDirectory(prefix="hkms-tpl-") as scratch:
                _migrate(Path(scratch), postgres=True, pg_names=names)
            _pg_template = names
        return _pg_template


def install_sqlite(data_dir: Path) -> None:
    """Put three freshly migrated SQLite databases into ``data_dir`` (which must have none yet)."""
    template = _sqlite_template_dir()
    data_dir.mkdir(parents=True, exist_ok=True)
    for file_name in SQLITE_FILES.values():
        target = data_dir / file_name
        if target.exists():
            raise FileExistsError(f"{target} exists already: the installation was set up before")
        shutil.copyfile(template / file_name, target)


def install_postgres(names: dict[str, str]) -> None:
    """(Re)create the databases ``names`` (alias -> database name) as copies of the migrated template."""
    template = _pg_template_names()
    for alias, name in names.items():
        _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        _pg_admin(f'CREATE DATABASE "{name}" TEMPLATE "{template[alias]}"')


def install(data_dir: Path, pg_names: Mapping[str, str] | Sequence[str] = ()) -> None:
    """Migrated databases for one installation: the PostgreSQL databases ``pg_names`` (alias -> name,
    or the names in the order default, kek, dek) recreated from the template, or, without names,
    SQLite files in ``data_dir``."""
    if not pg_names:
        install_sqlite(Path(data_dir))
        return
    names = dict(pg_names) if isinstance(pg_names, Mapping) else dict(zip(ALIASES, pg_names, strict=True))
    assert set(names) == set(ALIASES), names
    install_postgres(names)
