"""Consistent snapshots of the three databases, and the check that they fit together.

References run one way: a secret version (``default``) names its DEK (``dek``),
a DEK names its KEK version (``kek``), a KEK version names its REK version
(``kek`` row, material in the provider).  Material is always created before
anything references it, and destroyed only after nothing does; but rotations
and destructions running *during* a backup move references between databases
that are snapshotted at different instants, so no order alone makes three
separate snapshots consistent.  The procedure is therefore:

1. snapshot in reference order, referencing side first: ``default``, then
   ``dek``, then ``kek`` (a reference created before the first snapshot points
   at material that existed even earlier, so only a concurrent rotation or
   destruction can break it);
2. check every reference *within the snapshots* (:func:`check_references`);
3. if one dangles, throw the snapshots away and start again (a few attempts),
   then fail naming the dangling references.

SQLite: each snapshot is the online backup API (``sqlite3.Connection.backup``)
into a file of the work directory, which is then opened to check it.
PostgreSQL: one ``REPEATABLE READ`` transaction per database exports its
snapshot (``pg_export_snapshot``); the check runs inside those transactions
and ``pg_dump --snapshot`` dumps exactly what was checked (custom format).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from django.db import connections

from hkms_core.audit.models import AuditChainHead, AuditEvent
from hkms_core.tenancy.models import Project
from keys_app.models import Dek, KekVersion, Key, RootKeyVersion
from secrets_app.models import Secret, SecretVersion

ALIASES = ("default", "kek", "dek")
#: Snapshot order: the referencing database before the one it references.
ORDER = ("default", "dek", "kek")
Query = Callable[[str, str], list[tuple[Any, ...]]]
SQL_KEKS = "SELECT key_id, version, rek_version, state FROM {}"
SQL_REKS = "SELECT version, provider, check_value, state FROM {}"
SQL_VERSIONS = "SELECT dek_id, status FROM {} WHERE dek_id IS NOT NULL"
SQL_TABLES = {
    "sqlite": "SELECT name FROM sqlite_master WHERE type = 'table'",
    "postgresql": "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()",
}
#: Other kek tables whose rows are wrapped by a REK version (``version``, ``rek_version`` columns),
#: when the installation has them: the audit chain's key.
REK_WRAPPED_TABLES = {"audit_auditkey": "audit key"}


class SnapshotError(Exception):
    """A snapshot could not be taken or does not fit together; the message says why."""


def engine() -> str:
    vendors = {connections[alias].vendor for alias in ALIASES}
    if len(vendors) != 1 or not vendors <= {"sqlite", "postgresql"}:
        raise SnapshotError(f"backup supports three SQLite or three PostgreSQL databases, not {sorted(vendors)}")
    return vendors.pop()


def _tables() -> dict[str, str]:
    models = {
        "project": Project,
        "secret": Secret,
        "secret_version": SecretVersion,
        "key": Key,
        "audit_event": AuditEvent,
        "audit_head": AuditChainHead,
        "rek": RootKeyVersion,
        "kek": KekVersion,
        "dek": Dek,
    }
    return {name: f'"{model._meta.db_table}"' for name, model in models.items()}


def _id(value: Any) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


def check_references(query: Query, kind: str = "sqlite") -> dict[str, Any]:
    """Counts, REK versions needed, and every reference that does not resolve in the snapshots.

    ``dangling`` lists references that make a secret version or a KEK version
    unreadable (the snapshots must be retaken); ``warnings`` lists ones that are
    harmless (a version whose destruction had begun: its DEK is already gone).
    """
    t = _tables()
    dangling: list[str] = []
    warnings: list[str] = []
    keks: dict[tuple[uuid.UUID, int], tuple[int, str]] = {
        (_id(key_id), int(version)): (int(rek_version), str(state))
        for key_id, version, rek_version, state in query("kek", SQL_KEKS.format(t["kek"]))
    }
    reks = {
        int(version): {
            "version": int(version),
            "provider": str(provider),
            "state": str(state),
            "check_value": bytes(check).hex(),
        }
        for version, provider, check, state in query("kek", SQL_REKS.format(t["rek"]))
    }
    deks: dict[uuid.UUID, tuple[uuid.UUID, int]] = {}
    for dek_id, key_id, kek_version in query("dek", f"SELECT id, key_id, kek_version FROM {t['dek']}"):  # noqa: S608
        deks[_id(dek_id)] = (_id(key_id), int(kek_version))
    versions = 0
    for dek_id, status in query("default", SQL_VERSIONS.format(t["secret_version"])):
        versions += 1
        if _id(dek_id) not in deks:
            note = f"secret version with DEK {_id(dek_id)} ({status}): the DEK is not in the dek snapshot"
            (warnings if status in {"scheduled_for_deletion", "deleted"} else dangling).append(note)
    needed: set[int] = set()
    for dek_id, (key_id, kek_version) in deks.items():
        kek = keks.get((key_id, kek_version))
        if kek is None or kek[1] == "destroyed":
            dangling.append(f"DEK {dek_id}: KEK version {kek_version} of key {key_id} is not in the kek snapshot")
    for (key_id, version), (rek_version, state) in keks.items():
        if state == "destroyed":
            continue
        needed.add(rek_version)
        if rek_version not in reks:
            dangling.append(f"KEK version {version} of key {key_id}: REK version {rek_version} is not recorded")
    kek_tables = {str(row[0]) for row in query("kek", SQL_TABLES[kind])}
    for table, what in REK_WRAPPED_TABLES.items():
        if table not in kek_tables:
            continue
        for version, rek_version in query("kek", f'SELECT version, rek_version FROM "{table}"'):  # noqa: S608
            needed.add(int(rek_version))
            if int(rek_version) not in reks:
                dangling.append(f"{what} version {version}: REK version {rek_version} is not recorded")
    head = query("default", f"SELECT last_seq, last_hash FROM {t['audit_head']} WHERE id = 1")  # noqa: S608
    counts = {
        name: int(query(alias, f"SELECT COUNT(*) FROM {t[name]}")[0][0])  # noqa: S608
        for name, alias in (
            ("project", "default"),
            ("secret", "default"),
            ("key", "default"),
            ("audit_event", "default"),
        )
    }
    counts.update(
        {"secret_version_with_payload": versions, "dek": len(deks), "kek_version": len(keks), "rek_version": len(reks)}
    )
    return {
        "dangling": dangling,
        "warnings": warnings,
        "rek_versions_needed": sorted(needed),
        "rek_versions": [reks[v] for v in sorted(reks)],
        "counts": counts,
        "audit_head": {"last_seq": int(head[0][0]), "last_hash": str(head[0][1])} if head else None,
        "migrations": {alias: _migrations(query, alias) for alias in ALIASES},
    }


def _migrations(query: Query, alias: str) -> dict[str, str]:
    latest: dict[str, str] = {}
    for app, name in query(alias, "SELECT app, name FROM django_migrations"):
        latest[str(app)] = max(latest.get(str(app), ""), str(name))
    return dict(sorted(latest.items()))


# --- SQLite -------------------------------------------------------------------------------------
def _sqlite_path(alias: str) -> str:
    return str(connections[alias].settings_dict["NAME"])


@contextmanager
def sqlite_snapshot(workdir: Path) -> Iterator[tuple[dict[str, Path], Query]]:
    """Copy each database with the online backup API, in :data:`ORDER`; yield the files and a query."""
    files: dict[str, Path] = {}
    for alias in ORDER:
        target = workdir / f"{alias}.sqlite3"
        target.unlink(missing_ok=True)
        source = sqlite3.connect(f"file:{_sqlite_path(alias)}?mode=ro", uri=True, timeout=30)
        copy = sqlite3.connect(target)
        try:
            source.backup(copy)  # one step: a consistent copy of a committed state
            copy.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
        finally:
            copy.close()
            source.close()
        files[alias] = target
    opened = {alias: sqlite3.connect(f"file:{path}?mode=ro", uri=True) for alias, path in files.items()}
    try:
        yield files, lambda alias, sql: opened[alias].execute(sql).fetchall()
    finally:
        for connection in opened.values():
            connection.close()


def sqlite_restore(files: dict[str, Path]) -> None:
    """Put the snapshot files in place of the (empty) databases; connections must be closed."""
    for alias, source in files.items():
        target = Path(_sqlite_path(alias))
        target.parent.mkdir(parents=True, exist_ok=True)
        for suffix in ("-wal", "-shm", "-journal"):
            Path(f"{target}{suffix}").unlink(missing_ok=True)
        temporary = target.with_name(f".{target.name}.restoring")
        shutil.copyfile(source, temporary)
        with temporary.open("rb+") as handle:
            os.fsync(handle.fileno())
        os.chmod(temporary, 0o600)
        os.replace(temporary, target)


# --- PostgreSQL ---------------------------------------------------------------------------------
def _pg_settings(alias: str) -> dict[str, str]:
    s = connections[alias].settings_dict
    return {
        "dbname": str(s["NAME"]),
        "user": str(s.get("USER") or ""),
        "password": str(s.get("PASSWORD") or ""),
        "host": str(s.get("HOST") or ""),
        "port": str(s.get("PORT") or ""),
    }


def _pg_env(alias: str) -> dict[str, str]:
    conf = _pg_settings(alias)
    env = dict(os.environ)
    for name, var in (("user", "PGUSER"), ("password", "PGPASSWORD"), ("host", "PGHOST"), ("port", "PGPORT")):
        if conf[name]:
            env[var] = conf[name]
    return env


def _pg_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise SnapshotError(f"{name} is not installed (Debian: apt-get install postgresql-client)")
    return path


@contextmanager
def postgres_snapshot(workdir: Path) -> Iterator[tuple[dict[str, Path], Query]]:
    """Export one snapshot per database in :data:`ORDER`, yield a query over them, dump exactly them.

    The dumps (``pg_dump --format=custom --snapshot=…``) are written when the
    caller's block has checked the snapshots and returns without error; the
    exporting transactions stay open until then.
    """
    # local: the PostgreSQL driver is needed only to back up PostgreSQL (SQLite installations never load it)
    import psycopg
    from psycopg.conninfo import make_conninfo

    pg_dump = _pg_tool("pg_dump")
    opened: dict[str, Any] = {}
    snapshots: dict[str, str] = {}
    try:
        for alias in ORDER:
            conf = make_conninfo(**{k: v for k, v in _pg_settings(alias).items() if v})
            connection = psycopg.connect(conf, autocommit=True)
            opened[alias] = connection
            connection.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            row = connection.execute("SELECT pg_export_snapshot()").fetchone()
            assert row is not None
            snapshots[alias] = str(row[0])
        files = {alias: workdir / f"{alias}.pgdump" for alias in ALIASES}

        def query(alias: str, sql: str) -> list[tuple[Any, ...]]:
            return list(opened[alias].execute(sql).fetchall())

        yield files, query
        for alias in ORDER:
            result = subprocess.run(
                [
                    pg_dump,
                    "--format=custom",
                    "--no-owner",
                    "--no-privileges",
                    f"--snapshot={snapshots[alias]}",
                    f"--file={files[alias]}",
                    _pg_settings(alias)["dbname"],
                ],
                env=_pg_env(alias),
                capture_output=True,
                text=True,
                check=False,
            )
            if result.returncode != 0:
                raise SnapshotError(f"pg_dump of the {alias} database failed: {result.stderr.strip()[-300:]}")
    finally:
        for connection in opened.values():
            connection.close()


def postgres_restore(files: dict[str, Path]) -> None:
    """``pg_restore`` each dump into its (empty) database, one transaction per database."""
    pg_restore = _pg_tool("pg_restore")
    for alias in ORDER[::-1]:  # referenced material first: kek, dek, then default
        result = subprocess.run(
            [
                pg_restore,
                "--no-owner",
                "--no-privileges",
                "--clean",
                "--if-exists",
                "--single-transaction",
                "--exit-on-error",
                f"--dbname={_pg_settings(alias)['dbname']}",
                str(files[alias]),
            ],
            env=_pg_env(alias),
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise SnapshotError(f"pg_restore into the {alias} database failed: {result.stderr.strip()[-300:]}")
