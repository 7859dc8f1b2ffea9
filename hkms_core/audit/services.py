"""Appending to, verifying and exporting the audit log.

Fail closed: :func:`audit_record` runs inside the caller's transaction on the
default database, so if the event cannot be written the change it records is
rolled back too (for payload reads, the payload is not returned).  Events
never contain payloads, keys or API secrets: ``detail`` accepts only short
strings, numbers, booleans and lists of those, and values of type ``bytes``
are refused.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

from django.db import connections, transaction
from django.utils import timezone

from hkms_core.audit.actor import Actor
from hkms_core.audit.chain import (
    FIELDS_V1,
    GENESIS,
    LEGACY,
    Hasher,
    RawHasher,
    UnknownFormat,
    canonical_detail,
    canonical_v1,
    canonical_v1_fast,
    keyed_hasher,
    keyed_raw,
    keyed_tag,
    legacy_hash,
    legacy_raw,
    parse_tag,
)
from hkms_core.audit.keysource import AuditKeyMissing, AuditKeyRefused, AuditKeyUnavailable, key_source
from hkms_core.audit.models import AuditChainHead, AuditEvent
from hkms_core.audit.writer_queue import leader_turn
from hkms_core.metrics import audit_appended

_FIELDS = FIELDS_V1
_canonical = canonical_v1
log = logging.getLogger("hkms.audit")


def event_hash(prev_hash: str, values: dict[str, Any]) -> str:
    """The legacy (unkeyed, tag ``"0"``) hash of an event; see :mod:`hkms_core.audit.chain`."""
    return legacy_hash(prev_hash, values)


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


def _event_values(principal: Actor, action: str, obj: Any, outcome: str, detail: dict[str, Any]) -> dict[str, Any]:
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


def _hasher(key_version: int) -> tuple[str, Hasher]:
    """``(tag, hasher)`` for new events: keyed with the head's audit key version when it can be had.

    With no audit key yet (version 0), or while the root key is sealed or its
    provider unreachable, events are written in the legacy unkeyed format: an
    unseal must itself be audited.  ``verify_audit_log`` reports such events
    when they come after keyed ones.  Any other failure (kek row altered or
    removed, check value mismatch, no key source registered: see
    :mod:`hkms_core.audit.keysource`) propagates: the audited operation fails.
    """
    if key_version:
        try:
            return keyed_tag(key_version), keyed_hasher(key_source().key(key_version), key_version)
        except AuditKeyUnavailable:
            log.warning("audit key version %s unavailable (root key sealed?): event written unkeyed", key_version)
    return LEGACY, legacy_hash


def _append(batch: list[dict[str, Any]]) -> list[AuditEvent]:
    """Link and insert events in order, in the current transaction: one head read, one head move."""
    started = time.perf_counter()
    seq, prev_hash, key_version = _head_lock()
    tag, hasher = _hasher(key_version)
    events = []
    for content in batch:
        seq += 1
        values = {"seq": seq, **content}
        digest = hasher(prev_hash, values)
        events.append(
            AuditEvent.objects.create(**{**values, "prev_hash": prev_hash, "hash_version": tag, "hash": digest})
        )
        prev_hash = digest
    _head_move(seq, prev_hash)
    audit_appended(batch, time.perf_counter() - started)  # /metrics: events, payload reads, denials, latency
    return events


def audit_record(
    principal: Actor, action: str, obj: Any = None, *, outcome: str = AuditEvent.Outcome.ALLOWED, **detail: Any
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
            with leader_turn(), transaction.atomic(using="default"):  # leader_turn: before BEGIN
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
    principal: Actor, action: str, obj: Any = None, *, outcome: str = AuditEvent.Outcome.ALLOWED, **detail: Any
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


def _head_lock() -> tuple[int, str, int]:
    """``(last_seq, last_hash, key_version)`` of the chain head, locked until the transaction ends."""
    connection = connections["default"]
    sql = f"SELECT last_seq, last_hash, key_version FROM {_head_table()} WHERE id = 1"  # noqa: S608 (our table)
    if connection.features.has_select_for_update:
        sql += " FOR UPDATE"
    with connection.cursor() as cursor:
        cursor.execute(sql)
        row = cursor.fetchone()
    if row is None:  # a flushed database: the migration's row is gone
        head, _ = AuditChainHead.objects.select_for_update().get_or_create(id=1)
        return head.last_seq, head.last_hash, head.key_version
    return int(row[0]), str(row[1]), int(row[2])


def _head_move(seq: int, digest: str) -> None:
    with connections["default"].cursor() as cursor:
        cursor.execute(
            f"UPDATE {_head_table()} SET last_seq = %s, last_hash = %s WHERE id = 1",  # noqa: S608
            [seq, digest],
        )


def audit_denied(principal: Actor, action: str, obj: Any, error: Exception, **detail: Any) -> AuditEvent:
    """Record a refused attempt in its own committed transaction (the operation itself fails)."""
    with transaction.atomic():
        return audit_record(
            principal, action, obj, outcome=AuditEvent.Outcome.DENIED, error=type(error).__name__, **detail
        )


def audit_verify(*, batch_size: int = 10_000, expect_heads: Iterable[tuple[int, str]] = ()) -> dict[str, Any]:
    """Walk the chain in ``seq`` order; report the first broken link, or refuse.

    ``status`` is one of:

    * ``"intact"`` — every link and hash checks out (``ok`` is true);
    * ``"broken"`` — an event was edited, deleted, inserted or reordered by
      someone without the audit key, the head no longer matches the last event
      (tail removed), or an anchor in ``expect_heads`` (``(seq, hash)`` pairs
      exported earlier) is missing or differs (``first_broken`` says where);
    * ``"refused"`` — the audit key that would verify a keyed event cannot be
      unwrapped or is not the key the chain recorded (another installation's
      kek database, a wrong root key): nothing is claimed either way.

    * ``"unauthenticated"`` — the links and hashes check out, but some events
      after the first keyed one are unkeyed (``unkeyed_after_keyed``: runs
      ``[first, last]``).  The service writes those only while the root key is
      sealed (an unseal must be audited too), but anyone with database access
      can also write them: deleting event *i* and re-linking everything after it
      in the legacy format looks exactly like this.  ``ok`` is false; compare
      the runs with the known sealed periods.

    ``head`` is the ``{"seq", "hash"}`` to keep outside the databases as an anchor.
    """
    anchors = {int(seq): digest for seq, digest in expect_heads}
    head = AuditChainHead.objects.filter(id=1).first()
    recorded: dict[str, str] = dict(head.key_checks) if head is not None else {}
    hashers: dict[str, RawHasher] = {LEGACY: legacy_raw}
    prev_hash, expected_seq, checked, keyed = GENESIS, 1, 0, 0
    runs: list[list[int]] = []
    sql = _verify_sql()
    canonical = canonical_v1_fast
    details: dict[str, str] = {}  # stored detail text -> canonical JSON (events repeat their details)
    after = 0
    while True:
        with connections["default"].cursor() as cursor:
            cursor.execute(sql, [after, batch_size])
            batch = cursor.fetchall()
        if not batch:
            break
        for (
            seq,
            created,
            actor,
            uid,
            api_key,
            via,
            action,
            otype,
            oid,
            pid,
            outcome,
            sip,
            rid,
            detail,
            prev,
            tag,
            h,
        ) in batch:
            if seq != expected_seq:
                return _broken(
                    checked,
                    seq,
                    f"expected event #{expected_seq}, found #{seq} (an event was deleted, inserted or reordered)",
                )
            if prev != prev_hash:
                return _broken(checked, seq, "does not link to its predecessor")
            hasher = hashers.get(tag)
            if hasher is None:
                try:
                    version = parse_tag(tag)
                except UnknownFormat:
                    return _broken(checked, seq, f"unknown hash format {tag[:16]!r}")
                assert version is not None
                try:
                    key = key_source().key_for_verification(version, recorded)
                except (AuditKeyRefused, AuditKeyMissing) as exc:
                    return _refused(checked, seq, str(exc))
                hasher = hashers[tag] = keyed_raw(key, version)
            detail_json = details.get(detail)
            if detail_json is None:
                if len(details) > 50_000:
                    details.clear()
                detail_json = details[detail] = canonical_detail(detail)
            content = canonical(
                seq, created, actor, uid, api_key, via, action, otype, oid, pid, outcome, sip, rid, detail_json
            )
            if hasher(prev_hash, content) != h:
                return _broken(checked, seq, "content does not match its hash (edited without the audit key)")
            if tag == LEGACY:
                if keyed:
                    if runs and runs[-1][1] == seq - 1:
                        runs[-1][1] = seq
                    else:
                        runs.append([seq, seq])
            else:
                keyed += 1
            if anchors and seq in anchors and anchors[seq] != h:
                return _broken(checked, seq, "differs from the exported anchor (the log was rewritten)")
            prev_hash, expected_seq = h, seq + 1
            checked += 1
        after = batch[-1][0]
    last_seq = expected_seq - 1
    if head is not None and (head.last_seq != last_seq or head.last_hash != prev_hash):
        return _broken(
            checked,
            last_seq + 1,
            f"chain head says #{head.last_seq}, log ends at #{last_seq} (events were removed from the end)",
        )
    beyond = sorted(seq for seq in anchors if seq > last_seq)
    if beyond:
        return _broken(
            checked,
            last_seq + 1,
            f"log ends at #{last_seq} but an exported anchor names #{beyond[0]} (events were removed from the end)",
        )
    result: dict[str, Any] = {
        "ok": True,
        "status": "intact",
        "checked": checked,
        "keyed": keyed,
        "first_broken": None,
        "unkeyed_after_keyed": runs,
        "head": {"seq": last_seq, "hash": prev_hash},
    }
    if runs:
        first = runs[0][0]
        ranges = ", ".join(f"#{a}-#{b}" for a, b in runs)
        result.update(
            ok=False,
            status="unauthenticated",
            first_broken={
                "seq": first,
                "reason": f"events {ranges} were written without the audit key after the chain was keyed "
                "(while the root key was sealed, or rewritten by someone without the key)",
            },
        )
    return result


def _verify_sql() -> str:
    """One page of events in ``seq`` order, ``created_at`` already as Python's ``isoformat`` in UTC.

    Plain SQL: the ORM's per-row converters cost more than the HMAC (verification
    must run at 100k+ events/s).  ``detail`` comes back as JSON text.
    """
    connection = connections["default"]
    quote = connection.ops.quote_name
    if connection.vendor == "postgresql":
        created = "to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"+00:00\"')"
    else:  # SQLite stores str(naive UTC datetime): microseconds only when non-zero
        created = (
            "replace(CAST(created_at AS TEXT), ' ', 'T') "
            "|| CASE WHEN length(CAST(created_at AS TEXT)) = 19 THEN '.000000' ELSE '' END || '+00:00'"
        )
    columns = [quote(name) for name in (*_FIELDS, "prev_hash", "hash_version", "hash")]
    columns[1] = created
    if connection.vendor == "postgresql":
        columns[_FIELDS.index("detail")] = f"{quote('detail')}::text"
    return "SELECT {} FROM {} WHERE seq > %s ORDER BY seq LIMIT %s".format(  # noqa: S608 (our own names)
        ", ".join(columns), quote(AuditEvent._meta.db_table)
    )


def _broken(checked: int, seq: int, reason: str) -> dict[str, Any]:
    return {"ok": False, "status": "broken", "checked": checked, "first_broken": {"seq": seq, "reason": reason}}


def _refused(checked: int, seq: int, reason: str) -> dict[str, Any]:
    return {
        "ok": False,
        "status": "refused",
        "checked": checked,
        "first_broken": {"seq": seq, "reason": f"cannot verify: {reason}"},
    }


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
        row = {name: getattr(event, name) for name in (*_FIELDS, "prev_hash", "hash_version", "hash")}
        row["created_at"] = event.created_at.isoformat(timespec="microseconds")
        yield row
