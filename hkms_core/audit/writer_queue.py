"""A queue, across processes, for the group-commit leaders of one SQLite database.

SQLite has one write lock per database file, and a writer that finds it taken
*sleeps* (the busy handler: 1, 2, 5, … up to 100 ms steps) instead of waking
when it is released.  With two server processes appending audit events to one
file, those sleeps were the read's p99 (392 ms against PostgreSQL's 53 ms, whose
writers queue on the row lock and wake at once; docs/performance.md).

So each process's group-commit leader takes an exclusive ``flock`` on
``<database file>.audit-queue`` *before* it begins its transaction and drops it
after the commit: leaders of different processes then wait on the kernel's
queue and wake the moment the previous one is done.

Invariants:

* Taken only outside any transaction (the leader has not begun one), so the
  holder never waits for something that waits for it: a process that holds the
  SQLite lock without this one (any other writer) finishes and releases it, and
  the leader's busy handler then proceeds as before.  No deadlock is possible.
* Only an optimisation: correctness (the chain head locked in the transaction)
  does not depend on it.  Nothing is taken on PostgreSQL, for an in-memory or URI
  SQLite database, or when the lock file cannot be opened.
* One descriptor per process, reopened after a fork (an inherited descriptor
  would share the lock with the parent and exclude nothing).
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connections

_fd: tuple[int, int | None] | None = None  # (pid, descriptor or None: nothing to queue on), per process


def _lock_path() -> str | None:
    connection = connections["default"]
    if connection.vendor != "sqlite":
        return None
    name = str(connection.settings_dict.get("NAME") or "")
    if not name or name == ":memory:" or name.startswith("file:"):
        return None
    return f"{name}.audit-queue"


def _descriptor() -> int | None:
    global _fd
    pid = os.getpid()
    if _fd is not None and _fd[0] == pid:
        return _fd[1]
    path = _lock_path()
    fd: int | None = None
    if path is not None:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError:
            fd = None
    _fd = (pid, fd)  # decided once per process: the read path asks on every group commit
    return fd


@contextmanager
def leader_turn() -> Iterator[None]:
    """Wait for this process's turn to write (SQLite file databases only); hold it until exit."""
    fd = _descriptor()
    if fd is None:
        yield
        return
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
