"""A throw-away PostgreSQL primary with one streaming replica on free loopback ports.

Built from the distribution's server binaries (``/usr/lib/postgresql/*/bin``) in a temporary
directory: ``initdb``, then ``pg_basebackup -R`` for the replica, which streams as
``replica1``; the primary commits with ``synchronous_commit=remote_apply`` and
``synchronous_standby_names='ANY 1 (replica1)'`` (or asynchronously with ``synchronous=False``).
As root, every server command runs as the ``postgres`` OS user (``runuser -u postgres --``)
and the directory is owned by it.  ``kill_primary`` is ``pg_ctl stop -m immediate`` (a crash:
no shutdown checkpoint, no final WAL sent); ``promote`` turns the replica into the primary.
Durability settings are relaxed (``fsync=off``): the drill kills processes, not the machine.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def server_bin_dir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[4]))
    return Path(found[-1]).parent if found else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PgCluster:
    def __init__(self, *, synchronous: bool = True, base: str | None = None) -> None:
        bin_dir = server_bin_dir()
        if bin_dir is None:
            raise RuntimeError("no PostgreSQL server binaries under /usr/lib/postgresql/*/bin")
        self.bin = bin_dir
        self.synchronous = synchronous
        self.dir = Path(tempfile.mkdtemp(prefix="hkms-pgcluster-", dir=base))
        self.dir.chmod(0o755)
        self.as_root = os.geteuid() == 0
        if self.as_root:
            shutil.chown(self.dir, "postgres", "postgres")
        self.primary_port, self.replica_port = free_port(), free_port()
        self.primary_dir, self.replica_dir = self.dir / "primary", self.dir / "replica"
        self.primary_alive = False
        self.replica_alive = False

    # -- plumbing -------------------------------------------------------------------------
    def _run(self, *args: str, timeout: float = 60) -> str:
        command = [str(self.bin / args[0]), *args[1:]]
        if self.as_root:
            command = ["runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=self.dir)
        if result.returncode != 0:
            raise RuntimeError(f"{args[0]} failed ({result.returncode}): {result.stderr[-1500:]}")
        return result.stdout

    def _write(self, path: Path, text: str) -> None:
        with path.open("a") as handle:
            handle.write(text)

    def _start(self, data_dir: Path, port: int) -> None:
        self._run(
            "pg_ctl",
            "-D",
            str(data_dir),
            "-l",
            str(data_dir / "server.log"),
            "-w",
            "-t",
            "60",
            "-o",
            f"-p {port}",
            "start",
            timeout=90,
        )

    # -- life cycle -----------------------------------------------------------------------
    def start(self) -> PgCluster:
        self._run(
            "initdb",
            "-D",
            str(self.primary_dir),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
            "--no-instructions",
            timeout=120,
        )
        sync_names = "ANY 1 (replica1)" if self.synchronous else ""
        self._write(
            self.primary_dir / "postgresql.conf",
            "\n".join(
                [
                    "listen_addresses = '127.0.0.1'",
                    f"unix_socket_directories = '{self.dir}'",
                    "wal_level = replica",
                    "max_wal_senders = 5",
                    "max_replication_slots = 5",
                    "max_connections = 60",
                    "shared_buffers = 16MB",
                    "fsync = off",
                    "full_page_writes = off",
                    f"synchronous_standby_names = '{sync_names}'",
                    f"synchronous_commit = {'remote_apply' if self.synchronous else 'local'}",
                    "",
                ]
            ),
        )
        self._start(self.primary_dir, self.primary_port)
        self.primary_alive = True
        self._run(
            "pg_basebackup",
            "-h",
            "127.0.0.1",
            "-p",
            str(self.primary_port),
            "-U",
            "postgres",
            "-D",
            str(self.replica_dir),
            "-R",
            "-X",
            "stream",
            "--no-sync",
            timeout=120,
        )
        # A standby ignores synchronous_standby_names; once promoted it must not wait for one
        # (there is no second standby in the drill).
        self._write(
            self.replica_dir / "postgresql.auto.conf",
            "\n".join(
                [
                    f"primary_conninfo = 'host=127.0.0.1 port={self.primary_port} user=postgres "
                    "application_name=replica1'",
                    "synchronous_standby_names = ''",
                    "",
                ]
            ),
        )
        self._start(self.replica_dir, self.replica_port)
        self.replica_alive = True
        self.wait_streaming()
        return self

    def sql(self, port: int, statement: str, dbname: str = "postgres") -> list[tuple]:
        import psycopg

        with psycopg.connect(
            host="127.0.0.1", port=port, user="postgres", dbname=dbname, autocommit=True, connect_timeout=5
        ) as conn:
            cursor = conn.execute(statement)
            return cursor.fetchall() if cursor.description else []

    def wait_streaming(self, timeout: float = 60) -> None:
        wanted = {"quorum", "sync"} if self.synchronous else {"async"}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rows = self.sql(self.primary_port, "SELECT application_name, state, sync_state FROM pg_stat_replication")
            if any(name == "replica1" and state == "streaming" and sync in wanted for name, state, sync in rows):
                return
            time.sleep(0.2)
        raise RuntimeError(f"replica1 is not streaming as {wanted} after {timeout} s")

    def create_databases(self, *names: str) -> None:
        for name in names:
            self.sql(self.primary_port, f'CREATE DATABASE "{name}"')

    def url(self, dbname: str) -> str:
        """A libpq multi-host URL: whichever of the two accepts writes."""
        return (
            f"postgres://postgres@127.0.0.1:{self.primary_port},127.0.0.1:{self.replica_port}/{dbname}"
            "?target_session_attrs=read-write"
        )

    def kill_primary(self) -> None:
        self._run("pg_ctl", "-D", str(self.primary_dir), "-m", "immediate", "stop", timeout=60)
        self.primary_alive = False

    def promote(self) -> None:
        self._run("pg_ctl", "-D", str(self.replica_dir), "-w", "-t", "60", "promote", timeout=90)

    def stop(self) -> None:
        for alive, data_dir in ((self.primary_alive, self.primary_dir), (self.replica_alive, self.replica_dir)):
            if alive:
                with contextlib.suppress(Exception):
                    self._run("pg_ctl", "-D", str(data_dir), "-m", "immediate", "stop", timeout=60)
        self.primary_alive = self.replica_alive = False
        shutil.rmtree(self.dir, ignore_errors=True)
