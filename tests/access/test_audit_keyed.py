"""The keyed audit chain: without the audit key, nobody rewrites the log unnoticed.

The attack of issue 12: someone with write access to the default database
deletes an event, re-links everything after it with the public hash function,
moves the head — and on an unkeyed chain ``verify_audit_log`` said "intact".
"""

from __future__ import annotations

import json
import time
from datetime import timedelta
from unittest import mock

import pytest
from django.core.management import call_command
from django.db import connection, transaction
from django.utils import timezone

from hkms_core.access.principal import Principal
from hkms_core.audit import chain as formats
from hkms_core.audit import keysource
from hkms_core.audit.keysource import AuditKeyMissing
from hkms_core.audit.models import AuditChainHead, AuditEvent, AuditKey
from hkms_core.audit.services import audit_record, audit_verify, event_hash
from keys_app import crypto
from keys_app.errors import RootKeyError
from keys_app.services import material, root
from keys_app.services.audit_key import SOURCE, audit_key, audit_key_ensure, audit_key_rotate

pytestmark = pytest.mark.django_db(databases=["default", "kek", "dek"])


def _events(n: int, start: int = 0) -> None:
    operator = Principal.for_command()
    for i in range(start, start + n):
        audit_record(operator, "secret_version.access", ("secret", f"s-{i}", "p-1"), revision=i)


@pytest.fixture
def keyed(hierarchy):
    version = audit_key_ensure()
    _events(6)
    assert audit_verify()["status"] == "intact"
    return version


def _forget_keys() -> None:
    """A fresh process: no unwrapped key in memory."""
    material.key_cache().clear()
    root.forget_verified_root_keys()


def _delete_and_relink(victim: int, *, tag: str | None) -> None:
    """The attack: delete event ``victim``, renumber and re-hash its successors, move the head.

    ``tag`` is the ``hash_version`` the attacker writes (``None``: leave it as it was).
    """
    AuditEvent.objects.filter(seq=victim).delete()
    prev = AuditEvent.objects.get(seq=victim - 1).hash if victim > 1 else formats.GENESIS
    for event in AuditEvent.objects.filter(seq__gt=victim).order_by("seq"):
        event.seq -= 1
        values = {name: getattr(event, name) for name in formats.FIELDS_V1}
        event.prev_hash, event.hash = prev, event_hash(prev, values)
        if tag is not None:
            event.hash_version = tag
        event.save()
        prev = event.hash
    last = AuditEvent.objects.order_by("-seq").first()
    AuditChainHead.objects.filter(id=1).update(last_seq=last.seq, last_hash=last.hash)


def test_events_are_keyed_with_the_audit_key(keyed):
    tags = set(AuditEvent.objects.values_list("hash_version", flat=True))
    assert tags == {f"1.{keyed}"}
    result = audit_verify()
    assert result["keyed"] == 6 and result["head"]["seq"] == 6


def test_delete_and_relink_with_the_public_hash_is_detected(keyed):
    _delete_and_relink(3, tag=None)
    result = audit_verify()
    assert result["status"] == "broken" and result["first_broken"]["seq"] == 3
    assert "without the audit key" in result["first_broken"]["reason"]


def test_delete_and_relink_as_legacy_events_is_not_intact(keyed):
    """Downgrading the re-linked tail to the unkeyed format is reported, never "intact"."""
    _delete_and_relink(3, tag=formats.LEGACY)
    result = audit_verify()
    assert not result["ok"] and result["status"] == "unauthenticated"
    assert result["unkeyed_after_keyed"] == [[3, 5]] and result["first_broken"]["seq"] == 3
    with pytest.raises(SystemExit) as info:
        call_command("verify_audit_log")
    assert info.value.code == 3


def test_changing_a_tag_breaks_the_event(keyed):
    AuditEvent.objects.filter(seq=2).update(hash_version="1.9")
    assert audit_verify()["status"] == "refused"  # no key version 9 was ever recorded
    AuditEvent.objects.filter(seq=2).update(hash_version="7.1")
    result = audit_verify()
    assert result["status"] == "broken" and "unknown hash format" in result["first_broken"]["reason"]


def test_verification_with_another_audit_key_is_refused(keyed, capsys):
    """Another key, properly wrapped by this REK (another installation's kek row): refused, not "edited"."""
    impostor = crypto.generate_key()
    rek = root.rek_current()
    AuditKey.objects.using("kek").filter(version=keyed).update(
        wrapped=root.rek_wrap(rek, impostor, key_id="audit", kek_version=keyed),
        check_value=crypto.key_check_value(impostor),
    )
    _forget_keys()
    result = audit_verify()
    assert result["status"] == "refused" and result["checked"] == 0
    assert "not the key this chain was written with" in result["first_broken"]["reason"]
    with pytest.raises(SystemExit) as info:
        call_command("verify_audit_log")
    assert info.value.code == 2
    assert "REFUSED" in capsys.readouterr().out


def test_verification_with_an_unwrappable_audit_key_is_refused(keyed):
    row = AuditKey.objects.using("kek").get(version=keyed)
    AuditKey.objects.using("kek").filter(version=keyed).update(wrapped=bytes(row.wrapped)[:-1] + b"\0")
    _forget_keys()
    result = audit_verify()
    assert result["status"] == "refused" and "cannot unwrap audit key" in result["first_broken"]["reason"]


def test_the_chain_verifies_across_a_root_key_rotation(keyed):
    from keys_app.models import RootKeyVersion
    from keys_app.services.rotation.rek import rek_rotate

    rek_rotate()
    assert AuditKey.objects.using("kek").get(version=keyed).rek_version == 2
    assert RootKeyVersion.objects.using("kek").get(version=1).state == RootKeyVersion.State.RETIRED
    _forget_keys()
    _events(3, start=6)
    result = audit_verify()
    assert result["status"] == "intact" and result["keyed"] == 9


def test_a_new_audit_key_version_keys_new_events(keyed):
    second = audit_key_rotate()
    assert second == keyed + 1
    _events(2, start=6)
    assert AuditEvent.objects.get(seq=8).hash_version == f"1.{second}"
    _forget_keys()
    result = audit_verify()
    assert result["status"] == "intact" and result["keyed"] == 8


def test_legacy_events_before_the_key_are_covered_by_the_first_keyed_event(hierarchy):
    _events(4)  # no audit key yet: legacy, unkeyed
    assert set(AuditEvent.objects.values_list("hash_version", flat=True)) == {"0"}
    audit_key_ensure()
    _events(2, start=4)
    assert audit_verify()["status"] == "intact"
    # Rewriting a legacy event and re-linking up to the first keyed one breaks that event's MAC.
    _delete_and_relink(2, tag=None)
    result = audit_verify()
    assert result["status"] == "broken" and result["first_broken"]["seq"] == 4


def test_events_written_while_sealed_are_unkeyed_and_reported(keyed):
    _forget_keys()
    with mock.patch("keys_app.services.audit_key._unwrap", side_effect=RootKeyError("sealed")):
        _events(2, start=6)
    _events(1, start=8)
    assert list(AuditEvent.objects.order_by("seq").values_list("hash_version", flat=True))[6:] == ["0", "0", "1.1"]
    result = audit_verify()
    assert result["status"] == "unauthenticated" and result["unkeyed_after_keyed"] == [[7, 8]]


def test_without_a_key_source_nothing_keyed_is_audited(keyed):
    """Fail closed: the foundation's audit log with no key source registered (keys_app not ready)."""
    with mock.patch("hkms_core.audit.keysource._source", None):
        with pytest.raises(AuditKeyMissing), transaction.atomic():  # the audited change rolls back with it
            _events(1, start=6)
        result = audit_verify()
    assert result["status"] == "refused" and AuditEvent.objects.count() == 6
    assert keysource.key_source() is SOURCE  # registered by KeysAppConfig.ready()


def test_a_truncated_tail_is_detected_by_an_exported_anchor(keyed, capsys):
    call_command("verify_audit_log")
    out = capsys.readouterr().out
    anchor = out.rsplit("head ", 1)[1].strip()
    assert anchor == f"6:{AuditEvent.objects.get(seq=6).hash}"
    # Truncation: drop the last two events and move the head back to #4 (a state the log really had).
    AuditEvent.objects.filter(seq__gt=4).delete()
    four = AuditEvent.objects.get(seq=4)
    AuditChainHead.objects.filter(id=1).update(last_seq=4, last_hash=four.hash)
    assert audit_verify()["status"] == "intact"  # undetectable from inside the database...
    with pytest.raises(SystemExit) as info:
        call_command("verify_audit_log", "--expect-head", anchor)  # ...but not against an anchor
    assert info.value.code == 1
    assert "removed from the end" in capsys.readouterr().out
    result = audit_verify(expect_heads=[(4, "f" * 64)])
    assert result["status"] == "broken" and "anchor" in result["first_broken"]["reason"]


def test_a_malformed_anchor_is_a_one_line_error(keyed):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="SEQ:HASH"):
        call_command("verify_audit_log", "--expect-head", "six")


def test_verification_speed(keyed):
    """At least 100k events/s is the target (printed); the assertion leaves room for a busy machine."""
    n = 10_000
    head = AuditChainHead.objects.get(id=1)
    hasher = formats.keyed_hasher(audit_key(keyed).reveal(), keyed)
    prev, seq, rows = head.last_hash, head.last_seq, []
    now = timezone.now()
    for i in range(n):
        seq += 1
        values = {
            "seq": seq,
            "created_at": now + timedelta(microseconds=i),
            "actor": "app",
            "actor_user_id": 7,
            "api_key": "SCW0123456789ABCDEFG",
            "via": "api",
            "action": "secret_version.access",
            "object_type": "secret",
            "object_id": f"00000000-0000-0000-0000-{i:012d}",
            "project_id": "11111111-2222-3333-4444-555555555555",
            "outcome": "allowed",
            "source_ip": "10.0.0.1",
            "request_id": f"req-{i}",
            "detail": {"revision": 1} if i % 2 else {},
        }
        digest = hasher(prev, values)
        rows.append(AuditEvent(**values, prev_hash=prev, hash_version=formats.keyed_tag(keyed), hash=digest))
        prev = digest
    AuditEvent.objects.bulk_create(rows, batch_size=2000)
    AuditChainHead.objects.filter(id=1).update(last_seq=seq, last_hash=prev)
    started, cpu_started = time.perf_counter(), time.process_time()
    result = audit_verify()
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    rate = result["checked"] / elapsed
    print(
        f"\naudit_verify: {result['checked']} keyed events in {elapsed:.3f} s = {rate:,.0f} events/s "
        f"({result['checked'] / cpu:,.0f} per CPU-second; {connection.vendor})"
    )
    assert result["status"] == "intact" and result["checked"] == n + 6
    assert result["checked"] / cpu > 40_000


@pytest.mark.parametrize(
    "values",
    [
        {"actor_user_id": None, "detail": {}, "actor": 'é"\\\n\u2028x'},
        {"actor_user_id": 12, "detail": {"b": [1, "x"], "a": True, "c": None, "d": 1.5, "é": "ü"}},
    ],
)
def test_the_fast_canonical_form_is_byte_identical(values):
    base = {name: f"v-{name}" for name in formats.FIELDS_V1}
    base.update(seq=42, created_at=timezone.now().replace(microsecond=0), **values)
    expected = formats.canonical_v1(base)
    fast = formats.canonical_v1_fast(
        *[base[name] for name in formats.FIELDS_V1[:1]],
        base["created_at"].isoformat(timespec="microseconds"),
        *[base[name] for name in formats.FIELDS_V1[2:-1]],
        formats.canonical_detail(json.dumps(base["detail"])),
    )
    assert fast == expected


def test_the_keyed_hash_is_hmac_sha256():
    import hmac

    key = bytes(range(32))
    expected = hmac.new(key, b"hkms-audit\x001.3\x00" + b"p" * 64 + b"\x00" + b"{}", "sha256").hexdigest()
    assert formats.keyed_raw(key, 3)("p" * 64, b"{}") == expected


def test_rotate_audit_key_command(keyed, capsys):
    call_command("rotate_audit_key")
    assert f"version {keyed + 1}" in capsys.readouterr().out
    event = AuditEvent.objects.order_by("-seq").first()  # the command's own audit event
    assert event.action == "command.rotate_audit_key" and event.hash_version == f"1.{keyed + 1}"
    assert audit_verify()["status"] == "intact"
