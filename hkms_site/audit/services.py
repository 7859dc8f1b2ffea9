"""Appending to, verifying and exporting the audit log.

Fail closed: :func:`audit_record` runs inside the caller's transaction on the
default database, so if the event cannot be written the change it records is
rolled back too (for payload reads, the payload is not returned).  Events
never contain payloads, keys or API secrets: ``detail`` accepts only short
strings, numbers, booleans and lists of those, and values of type ``bytes``
are refused.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from django.db import connections, transaction
from django.utils import timezone

from hkms_site.access.principal import Principal
from hkms_site.audit.models import AuditChainHead, AuditEvent
from hkms_site.observability.metrics import audit_appended

GENESIS = "0" * 64
_FIELDS = (
    "seq",
    "created_at",
    "actor",
    "actor_user_id",
    "api_key",
    "via",
    "action",
    "object_type",
    "object_id",
    "project_id",
    "outcome",
    "source_ip",
    "request_id",
    "detail",
)


def _canonical(values: dict[str, Any]) -> bytes:
    document = {name: values[name] for name in _FIELDS}
    if isinstance(document["created_at"], datetime):
        document["created_at"] = document["created_at"].isoformat(timespec="microseconds")
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def event_hash(prev_hash: str, values: dict[str, Any]) -> str:
    return hashlib.sha256(prev_hash.encode() + _canonical(values)).hexdigest()


def _clean_detail(detail: dict[str, Any]) -> dict[str, Any]:
    clean: dict[str, Any] = {}
    for name, value in detail.items():
        if value is None or isinstance(value, bool | int | float):
            clean[name] = value
        elif isinstance(value, str):
            clean[name] = value[:500]
        elif isinstance(value, list | tuple) and all(isinstance(v, str | int) for v in value):
            clean[name] = list(value)[:50]
        else:
            raise TypeError(f"audit detail {name!r} has a type that is not allowed in an event")
    return clean


def _describe(obj: Any) -> tuple[str, str, str]:
    if obj is None:
        return "", "", ""
    if isinstance(obj, tuple):  # (object_type, object_id, project_id)
        return obj[0], str(obj[1]), str(obj[2] or "")
    label = obj._meta.model_name
    project = obj.pk if label == "project" else getattr(obj, "project_id", "")
    return label, str(obj.pk), str(project or "")


def _event_values(principal: Principal, action: str, obj: Any, outcome: str, detail: dict[str, Any]) -> dict[str, Any]:
    """An event's content, less its place in the chain (``seq``, hashes)."""
    object_type, object_id, project_id = _describe(obj)
    return {
        "created_at": timezone.now(),
        "actor": principal.username,
        "actor_user_id": principal.user_id,
        "api_key": principal.api_key.access_key if principal.api_key is not None else "",
        "via": principal.via,
        "action": action,
        "object_type": object_type,
        "object_id": object_id,
        "project_id": project_id,
        "outcome": str(outcome),
        "source_ip": principal.source_ip or "",
        "request_id": principal.request_id or "",
        "detail": _clean_detail({**detail, **principal.audit_context}),
    }


def _append(batch: list[dict[str, Any]]) -> list[AuditEvent]:
    """Link and insert events in order, in the current transaction: one head read, one head move."""
    started = time.perf_counter()
    seq, prev_hash = _head_lock()
    events = []
    for content in batch:
        seq += 1
        values = {"seq": seq, **content}
        digest = event_hash(prev_hash, values)
        events.append(AuditEvent.objects.create(**{**values, "prev_hash": prev_hash, "hash": digest}))
        prev_hash = digest
    _head_move(seq, prev_hash)
    audit_appended(batch, time.perf_counter() - started)  # /metrics: events, payload reads, denials, latency
    return events


def audit_record(
    principal: Principal, action: str, obj: Any = None, *, outcome: str = AuditEvent.Outcome.ALLOWED, **detail: Any
) -> AuditEvent:
    """Append one event, linked to its predecessor, in the caller's transaction (default db).

    The chain head is read and locked (``FOR UPDATE`` where the database has it;
    SQLite's writers are serialised by their immediate transactions), the event
    inserted and the head moved, as late as possible in the transaction and in
    plain SQL: the lock is held for three short statements and the commit.  No
    savepoint: if any step fails, the caller's whole transaction fails with it.
    """
    content = _event_values(principal, action, obj, outcome, detail)
    with transaction.atomic(using="default", savepoint=False):
        return _append([content])[0]


class _Pending:
    __slots__ = ("content", "done", "error", "event")

    def __init__(self, content: dict[str, Any]) -> None:
        self.content = content
        self.done = False
        self.event: AuditEvent | None = None
        self.error: BaseException | None = None


class GroupCommit:
    """Concurrent appends of one process share a transaction: one leader writes them all.

    A caller queues its event and waits.  When no append is in progress, the
    first waiter becomes the leader: it takes everything queued (at most
    ``max_batch``), links and inserts it in one transaction on its own
    connection, commits, and wakes the others, each of which then returns —
    or raises the leader's error if the transaction failed (fail closed: no
    caller returns before its event is committed).  Waiters block on a
    condition variable instead of polling the database's write lock, and N
    concurrent events cost one lock, one head update and one commit.
    """

    def __init__(self, max_batch: int = 64) -> None:
        self.max_batch = max_batch
        self._cond = threading.Condition()
        self._queue: list[_Pending] = []
        self._writing = False

    def append(self, content: dict[str, Any]) -> AuditEvent:
        mine = _Pending(content)
        with self._cond:
            self._queue.append(mine)
            while not mine.done and self._writing:
                self._cond.wait()
            if mine.done:
                return self._result(mine)
            self._writing = True
            batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch :]
            if mine not in batch:  # more than max_batch queued ahead of us: they go first
                batch, self._queue = [*batch[:-1], mine], [batch[-1], *self._queue]
        try:
            with transaction.atomic(using="default"):
                events = _append([p.content for p in batch])
            for pending, event in zip(batch, events, strict=True):
                pending.event = event
        except BaseException as exc:
            for pending in batch:
                pending.error = exc
            raise
        finally:
            with self._cond:
                for pending in batch:
                    pending.done = True
                self._writing = False
                self._cond.notify_all()
        return self._result(mine)

    @staticmethod
    def _result(pending: _Pending) -> AuditEvent:
        if pending.error is not None:
            raise pending.error
        assert pending.event is not None
        return pending.event


_group = GroupCommit()


def audit_record_committed(
    principal: Principal, action: str, obj: Any = None, *, outcome: str = AuditEvent.Outcome.ALLOWED, **detail: Any
) -> AuditEvent:
    """Append one event and return only once it is committed (for reads: record, then reveal).

    Outside a transaction, concurrent callers of this process are group-committed
    (:class:`GroupCommit`); inside one, this is :func:`audit_record` and the
    caller's commit is the event's.
    """
    if connections["default"].in_atomic_block:
        return audit_record(principal, action, obj, outcome=outcome, **detail)
    return _group.append(_event_values(principal, action, obj, outcome, detail))


def _head_table() -> str:
    return connections["default"].ops.quote_name(AuditChainHead._meta.db_table)


def _head_lock() -> tuple[int, str]:
    """``(last_seq, last_hash)`` of the chain head, locked until the transaction ends."""
    connection = connections["default"]
    sql = f"SELECT last_seq, last_hash FROM {_head_table()} WHERE id = 1"  # noqa: S608 (our own table name)
    if connection.features.has_select_for_update:
        sql += " FOR UPDATE"
    with connection.cursor() as cursor:
        cursor.execute(sql)
        row = cursor.fetchone()
    if row is None:  # a flushed database: the migration's row is gone
        head, _ = AuditChainHead.objects.select_for_update().get_or_create(id=1)
        return head.last_seq, head.last_hash
    return int(row[0]), str(row[1])


def _head_move(seq: int, digest: str) -> None:
    with connections["default"].cursor() as cursor:
        cursor.execute(
            f"UPDATE {_head_table()} SET last_seq = %s, last_hash = %s WHERE id = 1",  # noqa: S608
            [seq, digest],
        )


def audit_denied(principal: Principal, action: str, obj: Any, error: Exception, **detail: Any) -> AuditEvent:
    """Record a refused attempt in its own committed transaction (the operation itself fails)."""
    with transaction.atomic():
        return audit_record(
            principal, action, obj, outcome=AuditEvent.Outcome.DENIED, error=type(error).__name__, **detail
        )


def audit_verify(*, batch_size: int = 2000) -> dict[str, Any]:
    """Walk the chain in ``seq`` order; report the first broken link.

    Detects an edited event (its hash no longer matches its content), a deleted
    or inserted event (a gap or a link to the wrong predecessor), reordering,
    and a truncated tail (the head no longer matches the last event).
    """
    prev_hash, expected_seq, checked = GENESIS, 1, 0
    last_seq = 0
    qs = AuditEvent.objects.order_by("seq")
    after = 0
    while True:
        batch = list(qs.filter(seq__gt=after).values(*_FIELDS, "prev_hash", "hash")[:batch_size])
        if not batch:
            break
        for row in batch:
            if row["seq"] != expected_seq:
                return _broken(
                    checked,
                    row["seq"],
                    f"expected event #{expected_seq}, found #{row['seq']} "
                    "(an event was deleted, inserted or reordered)",
                )
            if row["prev_hash"] != prev_hash:
                return _broken(checked, row["seq"], "does not link to its predecessor")
            if event_hash(prev_hash, row) != row["hash"]:
                return _broken(checked, row["seq"], "content does not match its hash (edited)")
            prev_hash, expected_seq, last_seq = row["hash"], expected_seq + 1, row["seq"]
            checked += 1
        after = batch[-1]["seq"]
    head = AuditChainHead.objects.filter(id=1).first()
    if head is not None and (head.last_seq != last_seq or head.last_hash != prev_hash):
        return _broken(
            checked,
            last_seq + 1,
            f"chain head says #{head.last_seq}, log ends at #{last_seq} (events were removed from the end)",
        )
    return {"ok": True, "checked": checked, "first_broken": None}


def _broken(checked: int, seq: int, reason: str) -> dict[str, Any]:
    return {"ok": False, "checked": checked, "first_broken": {"seq": seq, "reason": reason}}


def audit_export(
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    filters: dict[str, str] | None = None,
    batch_size: int = 2000,
) -> Iterator[dict[str, Any]]:
    """Events as JSON-ready dicts in chain order, for shipping to an external store.

    ``since`` is inclusive and ``until`` exclusive; ``filters`` are exact matches on event
    fields (``actor``, ``action``, ``object_type``, ``object_id``, ``project_id``), a value
    ending in ``*`` matching as a prefix.
    """
    qs = AuditEvent.objects.order_by("seq")
    if since is not None:
        qs = qs.filter(created_at__gte=since)
    if until is not None:
        qs = qs.filter(created_at__lt=until)
    for name, value in (filters or {}).items():
        if name not in _FIELDS:
            raise ValueError(f"cannot filter audit events by {name!r}")
        qs = qs.filter(**{f"{name}__startswith": value[:-1]} if value.endswith("*") else {name: value})
    for event in qs.iterator(chunk_size=batch_size):
        row = {name: getattr(event, name) for name in (*_FIELDS, "prev_hash", "hash")}
        row["created_at"] = event.created_at.isoformat(timespec="microseconds")
        yield row
