"""The audit log is append-only and tamper-evident; writing it is part of the operation."""

from __future__ import annotations

import threading
from unittest import mock

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import DatabaseError

from hkms_core.access.principal import Principal
from hkms_core.access.services import role_grant
from hkms_core.audit.models import AuditChainHead, AuditEvent
from hkms_core.audit.services import audit_export, audit_record, audit_verify

pytestmark = pytest.mark.django_db(databases=["default"])


@pytest.fixture
def chain(db):
    operator = Principal.for_command()
    for n in range(6):
        audit_record(operator, "test.event", ("secret", f"s-{n}", "p-1"), n=n)
    result = audit_verify()
    assert (result["status"], result["checked"], result["first_broken"]) == ("intact", 6, None)
    return operator


def test_edit_is_detected(chain):
    AuditEvent.objects.filter(seq=3).update(outcome="denied")
    result = audit_verify()
    assert not result["ok"] and result["first_broken"]["seq"] == 3
    assert "edited" in result["first_broken"]["reason"]


def test_detail_edit_is_detected(chain):
    AuditEvent.objects.filter(seq=2).update(detail={"n": 99})
    assert audit_verify()["first_broken"]["seq"] == 2


def test_deletion_in_the_middle_is_detected(chain):
    AuditEvent.objects.filter(seq=4).delete()
    result = audit_verify()
    assert not result["ok"] and result["first_broken"]["seq"] == 5


def test_deletion_of_the_tail_is_detected(chain):
    AuditEvent.objects.filter(seq=6).delete()
    result = audit_verify()
    assert not result["ok"] and "removed from the end" in result["first_broken"]["reason"]


def test_insertion_is_detected(chain):
    last = AuditEvent.objects.get(seq=6)
    AuditEvent.objects.filter(seq=6).update(seq=7)
    forged = AuditEvent.objects.get(seq=7)
    forged.pk, forged.seq = None, 6
    forged.action = "forged"
    forged.save()
    assert not audit_verify()["ok"]
    assert last.hash  # the original is still there, now out of place


def test_reordering_is_detected(chain):
    AuditEvent.objects.filter(seq=2).update(seq=100)
    AuditEvent.objects.filter(seq=3).update(seq=2)
    AuditEvent.objects.filter(seq=100).update(seq=3)
    result = audit_verify()
    assert not result["ok"] and result["first_broken"]["seq"] == 2


def test_verify_command_exits_non_zero_on_tampering(chain, capsys):
    call_command("verify_audit_log")
    assert "chain intact" in capsys.readouterr().out
    AuditEvent.objects.filter(seq=1).update(actor="mallory")
    with pytest.raises(SystemExit) as info:
        call_command("verify_audit_log")
    assert info.value.code == 1
    assert "#1" in capsys.readouterr().out


def test_export_is_jsonl_in_chain_order(chain, capsys):
    call_command("export_audit_log")
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 6
    import json

    rows = [json.loads(line) for line in lines]
    assert [r["seq"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert rows[1]["prev_hash"] == rows[0]["hash"]
    assert len(list(audit_export())) == 6


def test_detail_refuses_bytes_so_payloads_cannot_leak(db):
    with pytest.raises(TypeError):
        audit_record(Principal.for_command(), "secret.access", None, payload=b"secret bytes")
    assert not AuditEvent.objects.exists()


@pytest.mark.django_db(databases=["default", "kek", "dek"])
def test_failed_audit_write_fails_the_operation_and_leaves_nothing(hierarchy):
    from keys_app.services.projects import project_create_with_default_key as project_create

    project = project_create(name="p")
    alice = get_user_model().objects.create_user("alice")
    from hkms_core.access.models import RoleGrant

    failing = mock.patch("hkms_core.audit.models.AuditEvent.objects.create", side_effect=DatabaseError("disk full"))
    with failing, pytest.raises(DatabaseError):
        role_grant(principal=Principal.for_command(), user=alice, role="secret_reader", obj=project)
    assert not RoleGrant.objects.exists()
    from guardian.models import UserObjectPermission

    assert not UserObjectPermission.objects.exists()
    assert audit_verify()["ok"]


@pytest.mark.django_db(databases=["default"], transaction=True)
def test_concurrent_appends_keep_one_valid_chain():
    AuditChainHead.objects.get_or_create(id=1)
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        from django.db import connections

        try:
            for i in range(15):
                audit_record(Principal.for_command(), "test.concurrent", ("secret", f"{n}-{i}", ""))
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    result = audit_verify()
    assert (result["status"], result["checked"], result["first_broken"]) == ("intact", 60, None)
