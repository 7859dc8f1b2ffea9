"""Group commit of audit events (the payload-read path): one chain, fail closed, committed on return."""

from __future__ import annotations

import threading
import time
from unittest import mock

import pytest
from django.db import DatabaseError, connections, transaction

from hkms_core.access.principal import Principal
from hkms_core.audit import services as audit
from hkms_core.audit.models import AuditChainHead, AuditEvent

OPERATOR = Principal.for_command()


def run_threads(count: int, target) -> list[BaseException]:
    errors: list[BaseException] = []

    def wrapped(n: int) -> None:
        try:
            target(n)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=wrapped, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return errors


@pytest.fixture
def group(monkeypatch):
    fresh = audit.GroupCommit(max_batch=64)
    monkeypatch.setattr(audit, "_group", fresh)
    return fresh


@pytest.mark.django_db(databases=["default"], transaction=True)
def test_concurrent_reads_form_one_valid_chain_and_each_event_is_committed_on_return(group):
    AuditChainHead.objects.get_or_create(id=1)
    returned: list[int] = []

    def reader(n: int) -> None:
        for i in range(10):
            event = audit.audit_record_committed(OPERATOR, "secret.version.access", ("secret", f"{n}-{i}", "p"))
            with connections["default"].cursor() as cursor:  # another connection would see it: committed
                cursor.execute("SELECT COUNT(*) FROM audit_auditevent WHERE seq = %s", [event.seq])
                assert cursor.fetchone()[0] == 1
            returned.append(event.seq)

    assert run_threads(8, reader) == []
    assert sorted(returned) == list(range(1, 81))
    result = audit.audit_verify()
    assert (result["status"], result["checked"], result["first_broken"]) == ("intact", 80, None)


@pytest.mark.django_db(databases=["default"], transaction=True)
def test_waiting_appends_share_one_transaction(group):
    AuditChainHead.objects.get_or_create(id=1)
    batches: list[int] = []
    real_append = audit._append

    def slow_first_append(batch):
        if not batches:  # hold the first leader until the others have queued behind it
            deadline = time.monotonic() + 10
            while len(group._queue) < 5 and time.monotonic() < deadline:
                time.sleep(0.01)
        batches.append(len(batch))
        return real_append(batch)

    with mock.patch.object(audit, "_append", side_effect=slow_first_append):
        assert run_threads(6, lambda n: audit.audit_record_committed(OPERATOR, "read", ("secret", n, ""))) == []
    assert batches == [1, 5]
    assert audit.audit_verify()["ok"] and AuditEvent.objects.count() == 6


@pytest.mark.django_db(databases=["default"], transaction=True)
def test_a_failed_commit_fails_every_read_of_the_batch_and_leaves_the_chain_intact(group):
    AuditChainHead.objects.get_or_create(id=1)
    audit.audit_record_committed(OPERATOR, "before", ("secret", "s", ""))
    first = threading.Event()
    real_append = audit._append

    def failing_second_batch(batch):
        if not first.is_set():
            first.set()
            deadline = time.monotonic() + 10
            while len(group._queue) < 3 and time.monotonic() < deadline:
                time.sleep(0.01)
            return real_append(batch)
        real_append(batch)
        raise DatabaseError("disk full")  # after the inserts: the whole batch must roll back

    with mock.patch.object(audit, "_append", side_effect=failing_second_batch):
        errors = run_threads(4, lambda n: audit.audit_record_committed(OPERATOR, "read", ("secret", n, "")))
    assert len(errors) == 3 and all(isinstance(e, DatabaseError) for e in errors)
    assert AuditEvent.objects.count() == 2  # "before" and the first leader's own event
    assert audit.audit_verify()["ok"]


@pytest.mark.django_db(databases=["default"])
def test_inside_a_transaction_the_event_is_the_callers(group):
    with pytest.raises(RuntimeError), transaction.atomic():
        audit.audit_record_committed(OPERATOR, "read", ("secret", "s", ""))
        raise RuntimeError("the caller fails after recording")
    assert not AuditEvent.objects.filter(action="read").exists()
    assert group._queue == []
