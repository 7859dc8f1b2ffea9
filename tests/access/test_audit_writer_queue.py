"""The audit writers' queue across processes (hkms_core.audit.writer_queue): group-commit leaders
of different processes take turns on a file lock instead of sleeping in SQLite's busy handler."""

from __future__ import annotations

import fcntl
import multiprocessing
import os

import pytest

from hkms_core.audit import writer_queue


@pytest.fixture
def queue_file(tmp_path, monkeypatch):
    path = tmp_path / "default.sqlite3.audit-queue"
    monkeypatch.setattr(writer_queue, "_lock_path", lambda: str(path))
    monkeypatch.setattr(writer_queue, "_fd", None)
    return path


def _try_lock(path: str, out) -> None:
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        out.put("got it")
    except BlockingIOError:
        out.put("busy")


def _child_turn(out) -> None:
    fd = writer_queue._descriptor()
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        out.put("got it")
    except BlockingIOError:
        out.put("busy")


def test_a_leader_holds_its_turn_against_other_processes_until_it_is_done(queue_file):
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    with writer_queue.leader_turn():
        assert queue_file.exists()
        child = ctx.Process(target=_try_lock, args=(str(queue_file), out))
        child.start()
        child.join(10)
        assert out.get(timeout=5) == "busy"  # another process waits for this leader
    child = ctx.Process(target=_try_lock, args=(str(queue_file), out))
    child.start()
    child.join(10)
    assert out.get(timeout=5) == "got it"  # and gets its turn once the leader is done


def test_a_forked_process_opens_its_own_descriptor(queue_file):
    """A server worker forked after its parent opened the queue must not reuse the inherited
    descriptor: it shares the parent's lock and would exclude nothing."""
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    with writer_queue.leader_turn():  # the parent opened its descriptor and holds its turn
        child = ctx.Process(target=_child_turn, args=(out,))
        child.start()
        child.join(10)
        assert out.get(timeout=5) == "busy"


def test_only_sqlite_files_are_queued(settings, monkeypatch):
    from django.db import connections

    if connections["default"].vendor != "sqlite":
        assert writer_queue._lock_path() is None  # PostgreSQL queues on its row lock
        return
    monkeypatch.setitem(connections["default"].settings_dict, "NAME", ":memory:")
    assert writer_queue._lock_path() is None
    monkeypatch.setitem(connections["default"].settings_dict, "NAME", "file:memorydb?mode=memory&cache=shared")
    assert writer_queue._lock_path() is None
    monkeypatch.setitem(connections["default"].settings_dict, "NAME", "/srv/hkms/default.sqlite3")
    assert writer_queue._lock_path() == "/srv/hkms/default.sqlite3.audit-queue"
